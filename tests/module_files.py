"""Load a Python file that is not an importable module (a benchmark script, another folder's test helpers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
"""The repository."""


def load_module_file(path: Path, name: str | None = None) -> ModuleType:
    """Execute ``path`` as a module named ``name`` (default: the file's stem) and return it."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
