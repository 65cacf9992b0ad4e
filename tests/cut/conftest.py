"""Makes ``cut_helpers`` (tiny settings and toy data of the CUT tests) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
