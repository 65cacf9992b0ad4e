import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real photos in ../shared/data; skips where that folder is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photos not present at {SHARED_DATA} (only on project machines and CI)")
    return SHARED_DATA
