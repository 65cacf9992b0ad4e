#!/usr/bin/env bash
# The ShapesWorld UNet on a lent GPU, in one command of at most 10 minutes.
#
#   bash scripts/gpu_shapes_unet.sh prepare        # here: fetch the wheels the GPU image lacks into .whl/
#   bash scripts/gpu_shapes_unet.sh run [MINUTES] [KEY=VALUE ...]
#                                                  # there (device tool, carry [".whl"]): train into $OUT
#
# `run` trains the bundle's UNet architecture (block channels 64,128; 4.2 M parameters) on the bundle's own
# frozen text encoder and VAE (src/zerocon/assets/shapes/pipeline), conditioned exactly as the shipped UNet,
# on the GPU with bf16 autocast, for MINUTES of wall clock (default 6, leaving time for rendering, the final
# 50-step evaluation and the copy back). KEY=VALUE pairs override any UnetConfig field (e.g. init_from=... to
# continue the shipped UNet: init_from=src/zerocon/assets/shapes/pipeline/unet). It writes $OUT/unet/:
# the EMA weights in float16 (under the 16 MB a returned file may have), config.json, metrics.json (steps,
# seconds, every setting, the oracle's final accuracy on 256 + 256 generations at 50 DDIM steps) and curve.jsonl,
# then puts the new UNet into a copy of the bundled pipeline and writes the main job's recolour measurement
# (benchmarks/shapes_recolour.py) to $OUT/recolour.json.
# The random draws come from the CPU generator, so a seed draws the same noise as on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(diffusers==0.42.1 importlib_metadata==10.2.0)

if [[ "${1:-}" == "prepare" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  ls .whl
  exit 0
fi
[[ "${1:-}" == "run" ]] || { echo "usage: $0 prepare | run [MINUTES] [KEY=VALUE ...]" >&2; exit 2; }
shift
MINUTES=${1:-6}
shift || true
: "${OUT:?run this through the device tool (it sets OUT)}"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
BUNDLE=src/zerocon/assets/shapes/pipeline
# the shipped UNet's settings (metrics.json), with a GPU's batch, learning rate and evaluation sizes
if ! python3 -m zerocon.cli shapes train unet --run /tmp/run --seed 41 --steps 1000000 --max-minutes "$MINUTES" \
  --set device=cuda bf16=true threads=8 batch_size=256 lr=1e-3 warmup=500 n_train=40000 \
  channels=64,128 layers_per_block=1 heads=2 noise_offset=0.15 eval_every=2000 save_every=2000 \
  final_eval_samples=256 clip_dir="$BUNDLE" vae_dir="$BUNDLE/vae" "$@" >"$OUT/log.txt" 2>&1; then
  tail -n 40 "$OUT/log.txt"
  exit 1
fi
grep -v '"loss"' "$OUT/log.txt" | tail -n 30

mkdir -p "$OUT/unet"
python3 - "$OUT/unet" <<'EOF'
import json, shutil, sys
from pathlib import Path
from diffusers import UNet2DConditionModel
out, run = Path(sys.argv[1]), Path("/tmp/run/unet")
UNet2DConditionModel.from_pretrained(run / "model").half().save_pretrained(out)
for name in ("metrics.json", "curve.jsonl"):
    shutil.copy(run / name, out / name)
print(json.dumps(json.loads((run / "metrics.json").read_text())["metrics"], indent=1))
EOF
ls -la "$OUT/unet"

# the new UNet in a copy of the bundled pipeline, and the main job's edit measured with it
rm -rf /tmp/pipeline && cp -r "$BUNDLE" /tmp/pipeline && rm -rf /tmp/pipeline/unet
cp -r /tmp/run/unet/model /tmp/pipeline/unet
python3 benchmarks/shapes_recolour.py --model /tmp/pipeline --device "${RECOLOUR_DEVICE:-cuda}" \
  --out "$OUT/recolour.json" ${RECOLOUR_ARGS:-} >/dev/null
python3 -c "import json; d = json.load(open('$OUT/recolour.json'))
print(json.dumps({bg: v['success'] for bg, v in d['by_background'].items()}))"
