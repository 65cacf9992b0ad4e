"""Choose zerocon's PatchNCE weight on ShapesBench's tune split: structure kept better at comparable accuracy.

Runs one ShapesBench on the ``tune`` split (scenes disjoint from training and from the reported bench) with
pix2pix-zero and zerocon at each weight of ``--weights`` on the ``--scale`` scale, summarises every method as
:mod:`shapes_tradeoff` does (mean edit accuracy over the tasks; mask IoU, centroid and background error over
the object-keeping tasks), writes the scatter plot, and chooses the weight with the highest mask IoU among
those whose edit accuracy is within ``--margin`` of pix2pix-zero's (the paper's claim: structure kept better
at comparable edit accuracy); ``null`` when none is. With ``--apply`` the chosen weight and its scale become
the model's own defaults (``edit_defaults`` in its model_index.json).

Example::

    python benchmarks/shapes_nce_weight.py --out /tmp/nce --weights 0.5,1,2,4,8 --scenes 12 --steps 20 \\
        --json benchmarks/results/edit/shapes_nce_weight_relative.json \\
        --plot benchmarks/results/edit/shapes_nce_weight_relative.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from shapes_tradeoff import plot, summarise

from zerocon.edit.config import GRADIENT_SCALES
from zerocon.io import emit_report
from zerocon.models import set_edit_defaults
from zerocon.shapes.bench import BenchConfig, run_bench

REFERENCE = "pix2pix_zero"


def choose(points: dict[str, dict], margin: float) -> str | None:
    """The zerocon label with the best mask IoU among those within ``margin`` of the reference's accuracy."""
    floor = points[REFERENCE]["edit_acc"] - margin
    fair = [k for k, p in points.items() if k != REFERENCE and p["edit_acc"] >= floor]
    return max(fair, key=lambda k: (points[k]["mask_iou"], -points[k]["nce_weight"]), default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the bench run")
    parser.add_argument("--weights", default="0.5,1,2,4,8")
    parser.add_argument("--scale", default="relative", choices=GRADIENT_SCALES)
    parser.add_argument("--margin", type=float, default=0.05, help="edit accuracy allowed below pix2pix-zero")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="scatter plot (default: OUT/tradeoff.png)")
    parser.add_argument("--apply", action="store_true", help="store the chosen weight in the model's folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")]
    methods = (REFERENCE, *(f"zerocon@{w:g}" for w in weights))
    cfg = BenchConfig(
        scenes=args.scenes,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        steps=args.steps,
        tasks=("color", "shape", "both", "background"),
        methods=methods,
        nce_scale=args.scale,
        model=args.model,
        split="tune",
    )
    start = time.perf_counter()
    run_bench(cfg, args.out, progress=False)
    points = summarise(args.out)
    chosen = choose(points, args.margin)
    plot(points, args.plot or args.out / "tradeoff.png")
    report = {
        "benchmark": "shapes_nce_weight",
        "command": " ".join(["python", *sys.argv]),
        "split": "tune",
        "scenes": cfg.scenes,
        "seeds": list(cfg.seeds),
        "ddim_steps": cfg.steps,
        "scale": args.scale,
        "margin": args.margin,
        "points": points,
        "chosen": chosen,
        "chosen_weight": points[chosen]["nce_weight"] if chosen else None,
        "seconds": round(time.perf_counter() - start, 1),
    }
    emit_report(report, args.json)
    if args.apply and chosen:
        weight = points[chosen]["nce_weight"]
        path = set_edit_defaults(args.model, patch_nce_weight=weight, patch_nce_scale=args.scale)
        print(f"PatchNCE weight {weight:g} ({args.scale}) written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
