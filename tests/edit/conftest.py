"""Fixtures of the editing tests: tiny pipelines saved with save_pretrained into a temporary folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import save_tiny_pipeline  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny epsilon-prediction ZeroConPipeline folder (no captioner)."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pipeline folder with a tiny BLIP captioner."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_blip"), with_blip=True)


@pytest.fixture(scope="session")
def tiny_v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny v-prediction (SD 2.x-style) pipeline folder."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_v"), prediction_type="v_prediction")


@pytest.fixture
def tiny_pipe(tiny_dir: Path):
    from zerocon.edit.pipeline import ZeroConPipeline

    pipe = ZeroConPipeline.from_pretrained(tiny_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe
