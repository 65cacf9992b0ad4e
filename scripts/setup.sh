#!/usr/bin/env bash
# Create .venv and install zerocon with every extra. torch is pinned to the CPU build that lies on these
# machines' disk (an unpinned torch would pull a multi-GB CUDA build). torchvision is not used.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ZEROCON_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
bash scripts/install_browser.sh
