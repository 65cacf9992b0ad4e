"""Can the ShapesWorld model recolour an object in place? The main job's edit (red square -> blue), measured.

Three measurements, each edit read with the analytic oracle (success: a blue square on gray whose mask overlaps
the input's with IoU >= 0.5, as ``benchmarks/main_job.py`` judges):

1. **Scenes like the example**: the bundle's default zerocon edit of ``--scenes`` scenes drawn like the bundled
   example (a red square on a textured gray background, no distractor; seeds after the example's).
2. **Settings on the example**: classifier-free guidance, cross-attention guidance step, PatchNCE weight and
   no noise regularisation, one at a time, from the bundle's defaults.
3. **Partial inversion on the example**: invert only the first ``k`` of the ``N`` DDIM steps and edit from
   there (the edit starts from a partly noised input that still holds the object's place), for word swap and
   zerocon.

Usage: ``python benchmarks/shapes_recolour.py [--model shapes] [--device cpu] [--scenes 12] [--steps 20]
[--out FILE.json]``; prints one JSON. ``--model`` takes any ShapesWorld pipeline folder (default: the bundle).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
from diffusers import DDIMInverseScheduler, DDIMScheduler
from PIL import Image

from zerocon.io import emit_report

TARGET = "red->blue"
WANT = ("square", "blue", "gray")


def judge(edit: Image.Image, mask: np.ndarray) -> dict[str, Any]:
    """The oracle's reading of an edit, its mask IoU with the input's object and whether it succeeded."""
    from zerocon.shapes.oracle import mask_iou, read_scene

    seen = read_scene(np.asarray(edit.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)))
    iou = float(mask_iou(seen.mask, mask))
    reading = (seen.shape, seen.color, seen.background)
    return {"read_as": list(reading), "mask_iou": round(iou, 3), "success": reading == WANT and iou >= 0.5}


class _FirstSteps(DDIMInverseScheduler):
    """DDIM inversion over only the first ``keep`` of its timesteps."""

    keep = 0

    def set_timesteps(self, num_inference_steps: int, device: Any = None) -> None:
        super().set_timesteps(num_inference_steps, device=device)
        self.timesteps = self.timesteps[: self.keep]


class _LastSteps(DDIMScheduler):
    """DDIM sampling over only the last ``keep`` of its timesteps (from where :class:`_FirstSteps` stops)."""

    keep = 0

    def set_timesteps(self, num_inference_steps: int, device: Any = None) -> None:
        super().set_timesteps(num_inference_steps, device=device)
        self.timesteps = self.timesteps[-self.keep :]


# they are DDIM, over fewer timesteps: the pipeline's "not DDIM" warning does not apply
warnings.filterwarnings("ignore", message="_FirstSteps is not DDIM|_LastSteps is not DDIM")


def partial_edit(pipe: Any, image: Image.Image, caption: str, config: Any, keep: int) -> Image.Image:
    """The photo recipe (:func:`zerocon.edit.photo.invert_photo`, :func:`~zerocon.edit.photo.guided_edit`) from
    a ``keep``-step inversion."""
    from zerocon.edit.directions import automatic_direction
    from zerocon.edit.photo import guided_edit, invert_photo

    inverse = _FirstSteps.from_config(pipe.inverse_scheduler.config)
    forward = _LastSteps.from_config(pipe.scheduler.config)
    inverse.keep = forward.keep = keep
    latents = invert_photo(pipe, image, caption=caption, config=config, inverse_scheduler=inverse).latents
    direction = automatic_direction(pipe, caption, TARGET, use_templates=False)
    out, _ = guided_edit(pipe, caption, direction, latents, config, scheduler=forward)
    return out.images[0]


def main(argv: list[str] | None = None) -> int:
    from zerocon.edit.config import EditConfig
    from zerocon.edit.loading import load_edit_pipeline
    from zerocon.shapes.assemble import EXAMPLE_SEED, example_scene
    from zerocon.shapes.world import SceneFilter, render_seed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes", help="ShapesWorld pipeline (default: the bundle)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    pipe = load_edit_pipeline(args.model, device=args.device)
    pipe.set_progress_bar_config(disable=True)
    base = EditConfig(num_inference_steps=args.steps).for_model(pipe.config)

    def edit(scene: Any, config: EditConfig) -> dict[str, Any]:
        result = pipe.edit(scene.pil(), target=TARGET, caption=scene.spec.caption, config=config)
        return judge(result.edit, scene.mask)

    flt = SceneFilter(
        shapes=["square"], colors=["red"], backgrounds=["gray"], distractor_prob=0.0, texture_prob=1.0
    )
    scenes = [render_seed(EXAMPLE_SEED + 1 + s, flt) for s in range(args.scenes)]
    similar = [dict(edit(scene, base), seed=EXAMPLE_SEED + 1 + s) for s, scene in enumerate(scenes)]

    example = example_scene()
    variants: dict[str, EditConfig] = {"defaults": base}
    for scale in (1.0, 2.0, 3.0):
        variants[f"guidance_scale={scale}"] = replace(base, guidance_scale=scale)
    for amount in (0.3, 1.0):
        variants[f"cross_attention_guidance_amount={amount}"] = replace(
            base, cross_attention_guidance_amount=amount
        )
    for weight in (4.0, 8.0, 16.0):
        variants[f"patch_nce_weight={weight}"] = replace(
            base, patch_nce=replace(base.patch_nce, weight=weight)
        )
    variants["num_reg_steps=0"] = replace(base, num_reg_steps=0)
    settings = {name: edit(example, config) for name, config in variants.items()}

    partial = {}
    for method in ("word_swap", "zerocon"):
        for keep in (6, 10, 14, args.steps):
            image = partial_edit(
                pipe, example.pil(), example.spec.caption, replace(base, method=method), keep
            )
            partial[f"{method} k={keep}"] = judge(image, example.mask)

    report = {
        "benchmark": "shapes_recolour",
        "command": " ".join(["python", *sys.argv]),
        "model": args.model,
        "target": TARGET,
        "steps": args.steps,
        "defaults": {"guidance_scale": base.guidance_scale, "patch_nce_weight": base.patch_nce.weight},
        "similar_scenes": {
            "successes": sum(r["success"] for r in similar),
            "scenes": len(similar),
            "read_as_blue_square": sum(r["read_as"] == list(WANT) for r in similar),
            "mask_iou_mean": round(float(np.mean([r["mask_iou"] for r in similar])), 3),
            "runs": similar,
        },
        "example_settings": settings,
        "example_partial_inversion": partial,
    }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
