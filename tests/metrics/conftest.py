"""Fixtures of the metric tests: tiny random networks saved into temporary folders (built once a session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_metric_nets as nets  # noqa: E402


@pytest.fixture(scope="session")
def tiny_nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("metric_nets")
    return {
        "clip": nets.save_tiny_clip(folder),
        "dino": nets.save_tiny_dino(folder),
        "lpips": nets.save_lpips_backbone(folder),
        "inception_torchscript": nets.save_tiny_inception(folder),
    }
