"""How big the PatchNCE gradient is next to the cross-attention gradient, model by model.

pix2pix-zeroCon's latent step is ``-amount * (d xa / dx + weight * d nce / dx)``. With ``scale="absolute"`` the
weight multiplies the loss, so what a weight does depends on the UNet's feature sizes; this script measures,
for each model, the ratio ``|d nce / dx| / |d xa / dx|`` over the guided steps of one edit (weight 1), which is
what ``scale="relative"`` divides out. Models: the bundled ShapesWorld pipeline on its example scene, and the
random-weight ``tiny`` and ``small_sd`` (Stable Diffusion 1.5's block layout) configs of ``edit_speed.py``.

Usage: ``python benchmarks/patch_nce_scale.py [--steps 10] [--out FILE.json]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from zerocon.io import emit_report

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_speed import save_small_sd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "edit"))

from tiny import save_tiny_pipeline  # noqa: E402


def measure(folder: str, image, caption: str, target: str, steps: int) -> dict:
    from zerocon.edit.guidance import PatchNCEGuidance
    from zerocon.edit.pipeline import EditConfig, ZeroConPipeline

    pipe = ZeroConPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    config = EditConfig(num_inference_steps=steps).for_model(pipe.config)
    inversion = pipe.invert_image(image, caption=caption, config=config)
    source, target_embeds = pipe.get_embeds([caption]), pipe.get_embeds([target])
    stats: list[dict[str, float]] = []
    pipe(
        caption,
        source_embeds=source,
        target_embeds=target_embeds,
        num_inference_steps=steps,
        guidance_scale=config.guidance_scale,
        negative_prompt=caption,
        latents=inversion.latents,
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
        method="zerocon",
        patch_nce=PatchNCEGuidance(weight=1.0, num_patches=256),
        scheduler=pipe.recipe_schedulers()[0],
        guidance_stats=stats,
    )
    ratios = [s["nce_grad_norm"] / s["xa_grad_norm"] for s in stats if s["xa_grad_norm"] > 0]
    return {
        "model": folder,
        "latent": list(inversion.latents.shape[1:]),
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "steps_measured": len(stats),
        "median_xa_grad_norm": statistics.median(s["xa_grad_norm"] for s in stats),
        "median_nce_grad_norm": statistics.median(s["nce_grad_norm"] for s in stats),
        "median_ratio_nce_over_xa": statistics.median(ratios) if ratios else None,
        "min_ratio": min(ratios) if ratios else None,
        "max_ratio": max(ratios) if ratios else None,
    }


def main(argv: list[str] | None = None) -> int:
    from zerocon.shapes.assemble import example_scene

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--shapes-model", default="shapes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(3)
    example = example_scene(background="gray")  # the example this record was first measured on
    results = [
        measure(
            args.shapes_model,
            example.pil(),
            example.spec.caption,
            example.spec.with_object(color="blue").caption,
            args.steps,
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder, size in (
            ("tiny", save_tiny_pipeline(Path(tmp) / "tiny"), 32),
            ("small_sd", save_small_sd(Path(tmp) / "small_sd"), 256),
        ):
            image = torch.rand(1, 3, size, size)
            from diffusers.image_processor import VaeImageProcessor

            pil = VaeImageProcessor().postprocess(image * 2 - 1, output_type="pil")[0]
            row = measure(str(folder), pil, "a photo of a cat", "a photo of a dog", args.steps)
            results.append({**row, "model": name})
    report = {"benchmark": "patch_nce_scale", "command": " ".join(["python", *sys.argv]), "results": results}
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
