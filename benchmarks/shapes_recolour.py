"""Can the ShapesWorld model recolour an object in place? The main job's edit (red square -> blue), measured on
every background.

For each background colour, ``--scenes`` scenes drawn like the bundled example (a red square on a textured
background, no distractor; seeds after the example's) get the bundle's default edit ``red->blue`` (``zerocon
edit``'s settings, ``--steps`` DDIM steps), read with the analytic oracle. Success, as ``main_job.py`` judges:
a blue square on the input's background whose mask overlaps the input's with IoU >= 0.5.

Beside each rate, the geometry that predicts it. Given a noised red square and the caption "a blue square",
a denoiser trained on ShapesWorld weighs two explanations: the square recoloured in place, or the red square
taken for background and a blue square drawn elsewhere. In the VAE latent (mean, unscaled), the first costs
``|z(red) - z(blue)|^2`` and the second ``|z(red) - z(empty)|^2 + |z(blue) - z(empty)|^2`` (the same scene
with the square blue, or without it). Their ratio below 1 favours the edit in place; above 1 the move. In
pixels it is the sign of ``(red - background) . (blue - background)``: on a background between the two
colours (gray) the move is the cheaper explanation.

Usage: ``python benchmarks/shapes_recolour.py [--model shapes] [--device cpu] [--scenes 24] [--steps 50]
[--backgrounds gray white black pink] [--out FILE.json]``; prints one JSON. ``--model`` takes any ShapesWorld
pipeline folder (default: the bundle).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch
from PIL import Image

from zerocon.io import emit_report

TARGET = "red->blue"


def judge(edit: Image.Image, mask: np.ndarray, background: str) -> dict[str, Any]:
    """The oracle's reading of an edit, its mask IoU with the input's object and whether it succeeded."""
    from zerocon.shapes.bench import IN_PLACE_IOU
    from zerocon.shapes.oracle import mask_iou, read_scene

    seen = read_scene(np.asarray(edit.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)))
    iou = float(mask_iou(seen.mask, mask))
    reading = (seen.shape, seen.color, seen.background)
    success = reading == ("square", "blue", background) and iou >= IN_PLACE_IOU
    return {"read_as": list(reading), "mask_iou": round(iou, 3), "success": success}


@torch.no_grad()
def latent_costs(vae: Any, spec: Any) -> dict[str, float]:
    """The two explanations' squared latent distances for the scene ``spec`` (see the module docstring)."""
    from zerocon.shapes.world import render

    empty = spec.with_object(radius=1e-4)
    images = np.stack([render(s).image for s in (spec, spec.with_object(color="blue"), empty)])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    red, blue, none = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean.float()
    in_place = float(((red - blue) ** 2).sum())
    move = float(((red - none) ** 2).sum() + ((blue - none) ** 2).sum())
    return {"in_place": in_place, "move": move}


def main(argv: list[str] | None = None) -> int:
    from zerocon.edit.config import EditConfig
    from zerocon.edit.loading import load_edit_pipeline
    from zerocon.shapes.assemble import EXAMPLE_SEED
    from zerocon.shapes.bench import wilson_interval
    from zerocon.shapes.world import BACKGROUND_COLORS, SceneFilter, colour_alignment, render_seed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes", help="ShapesWorld pipeline (default: the bundle)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--backgrounds", nargs="+", default=list(BACKGROUND_COLORS), choices=BACKGROUND_COLORS
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    pipe = load_edit_pipeline(args.model, device=args.device)
    pipe.set_progress_bar_config(disable=True)
    config = EditConfig(num_inference_steps=args.steps).for_model(pipe.config)
    seeds = [EXAMPLE_SEED + 1 + s for s in range(args.scenes)]
    by_background = {}
    for background in args.backgrounds:
        flt = SceneFilter(
            shapes=["square"], colors=["red"], backgrounds=[background], distractor_prob=0.0, texture_prob=1.0
        )
        runs = []
        for seed in seeds:
            scene = render_seed(seed, flt)
            result = pipe.edit(scene.pil(), target=TARGET, caption=scene.spec.caption, config=config)
            costs = latent_costs(pipe.vae, scene.spec)
            runs.append(
                {
                    "seed": seed,
                    **judge(result.edit, scene.mask, background),
                    "latent_cost": {k: round(v, 2) for k, v in costs.items()},
                }
            )
        ratios = [r["latent_cost"]["in_place"] / r["latent_cost"]["move"] for r in runs]
        by_background[background] = {
            "success": wilson_interval(sum(r["success"] for r in runs), len(runs)),
            "read_as_blue_square": sum(r["read_as"][:2] == ["square", "blue"] for r in runs),
            "mask_iou_mean": round(float(np.mean([r["mask_iou"] for r in runs])), 3),
            "latent_cost_ratio_in_place_over_move": {
                "median": round(float(np.median(ratios)), 3),
                "min": round(min(ratios), 3),
                "max": round(max(ratios), 3),
            },
            "pixel_cosine_red_blue_from_background": round(colour_alignment("red", "blue", background), 3),
            "runs": runs,
        }
    report = {
        "benchmark": "shapes_recolour",
        "command": " ".join(["python", *sys.argv]),
        "model": args.model,
        "target": TARGET,
        "steps": args.steps,
        "settings": {
            "method": config.method,
            "guidance_scale": config.guidance_scale,
            "patch_nce_weight": config.patch_nce.weight,
        },
        "seeds": [seeds[0], seeds[-1]],
        "by_background": by_background,
    }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
