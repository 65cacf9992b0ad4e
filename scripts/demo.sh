#!/usr/bin/env bash
# The README's main job: install into .venv, then edit the bundled ShapesWorld scene with the bundled
# models (no network, CPU): pix2pix-zeroCon, colour swap. Writes outputs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${ZEROCON_VENV:-.venv}
"$VENV/bin/zerocon" edit src/zerocon/assets/shapes/example.png --model shapes \
  --target "${ZEROCON_DEMO_TARGET:-red->blue}" --out outputs/demo "$@"
