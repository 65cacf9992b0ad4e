"""How well the analytic ShapesWorld oracle reads rendered scenes (its ground truth is the renderer's spec).

Renders ``--n`` scenes with consecutive seeds from ``--seed`` and reads each with
:func:`zerocon.shapes.oracle.read_scene`: the fraction read with the right shape, object colour and
background, and the mean IoU of the oracle's mask with the rendered mask.

Usage: ``python benchmarks/shapes_oracle_check.py [--n 400] [--seed 50000000] [--out FILE.json]``; prints
one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from zerocon.io import emit_report


def main(argv: list[str] | None = None) -> int:
    from zerocon.shapes.oracle import mask_iou, read_scene
    from zerocon.shapes.world import iter_scenes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=50_000_000, help="first scene seed")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    hits = {"shape": 0, "color": 0, "background": 0}
    ious = []
    for scene in iter_scenes(args.n, args.seed):
        got = read_scene(scene.image)
        hits["shape"] += got.shape == scene.spec.obj.shape
        hits["color"] += got.color == scene.spec.obj.color
        hits["background"] += got.background == scene.spec.background
        ious.append(mask_iou(got.mask, scene.mask))
    report = {
        "benchmark": "shapes_oracle_check",
        "command": " ".join(["python", *sys.argv]),
        "n": args.n,
        "first_seed": args.seed,
        **{f"{k}_acc": v / args.n for k, v in hits.items()},
        "mask_iou": round(float(np.mean(ious)), 4),
    }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
