"""zerocon: text-guided and contrastive image-to-image translation.

Nothing heavy runs at import: the public names are resolved lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ZeroconError": "zerocon.errors",
    "load_image": "zerocon.images",
    "patch_nce_loss": "zerocon.contrastive",
    "PatchSampleMLP": "zerocon.contrastive",
    "ZeroConPipeline": "zerocon.edit.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zerocon' has no attribute {name!r}")


__all__ = [*_LAZY, "__version__"]
