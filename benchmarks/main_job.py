"""The README's main job, timed and judged: how long it takes, how much memory, and how often it succeeds.

Runs ``zerocon edit src/zerocon/assets/shapes/example.png --model shapes --target "red->blue"`` (the command of
``scripts/demo.sh``, 50 DDIM steps) once per seed, each in a fresh process, and reads every edit with the
analytic oracle: the edit succeeds when the object is read as a blue square on the input's background and its
mask overlaps the input's (IoU >= 0.5, i.e. it stayed in place). Reported: wall time and peak resident memory
of each process (``ru_maxrss`` of the child; this script itself holds a few tens of MB), the oracle's reading
of each edit, and the success rate with its 95 % (Wilson) interval.

Usage: ``python benchmarks/main_job.py [--seeds 8] [--out FILE.json] [--keep DIR]``; prints one JSON object.
``--keep DIR`` keeps every seed's output folder (seed 0's comparison.png is the README's picture).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from zerocon.io import emit_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "zerocon" / "assets" / "shapes" / "example.png"
TARGET = "red->blue"


def run_seed(seed: int, out: Path, source: Any) -> dict:
    """One main job in a fresh process; its time, memory and the oracle's reading of the edit against the
    oracle's reading ``source`` of the input."""
    from PIL import Image

    from zerocon.shapes.bench import IN_PLACE_IOU
    from zerocon.shapes.oracle import mask_iou, read_scene

    cmd = [sys.executable, "-m", "zerocon.cli", "edit", str(EXAMPLE), "--model", "shapes", "--target", TARGET]
    cmd += ["--seed", str(seed), "--out", str(out), "--no-cache", "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the main job failed for seed {seed}:\n{done.stderr[-2000:]}")
    peak_kb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    edit = read_scene(np.asarray(Image.open(out / "example" / "edit.png").convert("RGB")))
    reading = {"shape": edit.shape, "color": edit.color, "background": edit.background}
    want = {"shape": "square", "color": "blue", "background": source.background}
    iou = mask_iou(edit.mask, source.mask)
    return {
        "seed": seed,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "edit_read_as": reading,
        "mask_iou_with_input": round(float(iou), 4),
        "success": reading == want and iou >= IN_PLACE_IOU,
        "record": json.loads((out / "example" / "record.json").read_text())["settings"],
    }


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from zerocon.shapes.bench import wilson_interval
    from zerocon.shapes.oracle import read_scene

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the output folders here (seed-N/)")
    args = parser.parse_args(argv)
    source = read_scene(np.asarray(Image.open(EXAMPLE).convert("RGB")))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        runs = [run_seed(seed, folder / f"seed-{seed}", source) for seed in range(args.seeds)]
    wins = sum(r["success"] for r in runs)
    report = {
        "benchmark": "main_job",
        "command": " ".join(["python", *sys.argv]),
        "job": f'zerocon edit {EXAMPLE.relative_to(ROOT)} --model shapes --target "{TARGET}" --seed SEED',
        "success": wilson_interval(wins, len(runs)),
        "successes": wins,
        "seeds": len(runs),
        "runs": runs,
    }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
