"""Fixtures of the LANIT tests: a tiny CLIP saved to a folder and loaded from it (builders in lanit_helpers)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lanit_helpers import make_tiny_clip  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from zerocon.lanit.prompts import load_clip

    return load_clip(str(tiny_clip_dir))


@pytest.fixture(autouse=True)
def _one_thread():
    """These tiny networks run fastest on one thread, and do not slow down on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
