#!/usr/bin/env bash
# The README's test command: install into .venv, check lint, run the fast suite, then the slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${ZEROCON_VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest
"$VENV/bin/python" -m pytest -m slow
