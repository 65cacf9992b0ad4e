"""Choose the editor's classifier-free guidance scale for the ShapesWorld model on tuning scenes.

Runs ShapesBench on its ``tune`` split (scenes disjoint from training and from the reported bench scenes)
once per guidance scale and prints one JSON object: per scale, the edit accuracy of every task and method and
the background error, and the scale with the best mean edit accuracy over the inversion-based editors. With
``--apply`` that scale becomes the model's own default (``edit_defaults`` in its model_index.json) for
``zerocon edit``, the web app and ShapesBench.

Example::

    python benchmarks/shapes_guidance.py --out /tmp/guidance --scales 1.5,2,3,5 --scenes 8 --steps 20 --apply
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from zerocon.io import write_json
from zerocon.models import set_edit_defaults
from zerocon.shapes.bench import BenchConfig, run_bench

EDITORS = ("word_swap", "pix2pix_zero", "zerocon")


def sweep(out: Path, scales: list[float], cfg: BenchConfig) -> dict:
    per_scale = {}
    for scale in scales:
        run = run_bench(replace(cfg, guidance_scale=scale), out / f"g{scale:g}", progress=False)
        summary = run["summary"]
        per_scale[f"{scale:g}"] = {
            key: {m: round(entry[m]["mean"], 4) for m in ("edit_acc", "bg_err", "mask_iou") if m in entry}
            for key, entry in summary.items()
        }
        editor_acc = [e["edit_acc"]["mean"] for k, e in summary.items() if k.split("/")[1] in EDITORS]
        per_scale[f"{scale:g}"]["mean_editor_edit_acc"] = round(float(np.mean(editor_acc)), 4)
        print(f"guidance {scale:g}: mean editor edit accuracy {np.mean(editor_acc):.3f}", flush=True)
    best = max(per_scale, key=lambda k: per_scale[k]["mean_editor_edit_acc"])
    return {"split": cfg.split, "scenes": cfg.scenes, "seeds": list(cfg.seeds), "steps": cfg.steps,
            "methods": list(cfg.methods), "per_scale": per_scale, "best_scale": float(best)}  # fmt: skip


def apply_scale(model: str, scale: float) -> Path:
    """Make ``scale`` the default guidance of a local pipeline folder (its model_index.json's ``edit_defaults``)."""
    return set_edit_defaults(model, guidance_scale=scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--scales", default="1.5,2,3,5")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", default="word_swap,pix2pix_zero")
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--apply", action="store_true", help="store the best scale in the model's folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(
        scenes=args.scenes,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        steps=args.steps,
        methods=tuple(args.methods.split(",")),
        model=args.model,
        split="tune",
    )
    result = sweep(Path(args.out), [float(s) for s in args.scales.split(",")], cfg)
    print(json.dumps(result))
    write_json(Path(args.out) / "guidance.json", result)
    if args.apply:
        print(
            f"guidance scale {result['best_scale']:g} written to {apply_scale(args.model, result['best_scale'])}"
        )


if __name__ == "__main__":
    main()
