"""Does a ShapesWorld UNet keep the layout when only the caption changes? The bound on every editor.

An inversion-based editor starts its edit pass from the inverted noise and denoises it with the edited
caption. If the UNet, given one starting noise, draws a red square in one place and a blue square in another,
the edit pass must fight the model to keep the object in place. This measures that directly, without any
editor: for ``--n`` starting noises, generate from the same noise with a caption and with the caption's one-word
swap (colour, or shape), read both images with the oracle, and report the object-mask IoU between them
(1 = same place and outline) per kind of swap and per guidance scale, with its 95 % interval, next to the IoU
of two different noises with the same caption (the chance level).

Usage: ``python benchmarks/shapes_layout_consistency.py [PIPELINE] [--n 64] [--steps 50]
[--guidance 1.5,4] [--out FILE.json]``; PIPELINE defaults to the bundle.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from zerocon.io import emit_report

SWAPS = ("color", "shape")


def _swap(caption: str, kind: str, rng: np.random.Generator) -> tuple[str, str]:
    """The caption with its ``kind`` word swapped for another, and the new word."""
    from zerocon.shapes.world import OBJECT_COLORS, SHAPES, caption_for, parse_caption

    parts = parse_caption(caption)
    pool = list(OBJECT_COLORS) if kind == "color" else list(SHAPES)
    other = [v for v in pool if v != parts[kind]]
    parts[kind] = other[int(rng.integers(len(other)))]
    return caption_for(parts["shape"], parts["color"], parts["background"]), parts[kind]


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    half = 1.96 * arr.std(ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else float("nan")
    return {"mean_iou": round(float(arr.mean()), 4), "ci95": round(float(half), 4), "n": len(arr)}


@torch.no_grad()
def measure(folder: str, n: int, steps: int, scales: list[float], seed: int = 0) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from zerocon.models import resolve_model
    from zerocon.shapes.data import TRAIN_CAPTIONS
    from zerocon.shapes.oracle import mask_iou, read_scene
    from zerocon.shapes.train import generate, load_text_encoder

    location = Path(resolve_model(folder))
    tokenizer, text_encoder = load_text_encoder(location)
    unet = UNet2DConditionModel.from_pretrained(location, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(location, subfolder="vae").eval()
    rng = np.random.default_rng(seed)
    captions = [TRAIN_CAPTIONS[int(i)] for i in rng.integers(len(TRAIN_CAPTIONS), size=n)]
    shape = (n, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    other_noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))

    def masks(caps: list[str], latents: torch.Tensor, scale: float) -> list[np.ndarray]:
        images = generate(unet, vae, text_encoder, tokenizer, caps, steps, scale, latents=latents.clone())
        arrays = ((images.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        return [read_scene(a).mask for a in arrays]

    report: dict = {"pipeline": folder, "n": n, "ddim_steps": steps, "scales": {}}
    for scale in scales:
        base = masks(captions, noise, scale)
        row = {
            "same_caption_other_noise": _summary(
                [mask_iou(a, b) for a, b in zip(base, masks(captions, other_noise, scale))]
            )
        }
        for kind in SWAPS:
            swapped, words = zip(*[_swap(c, kind, rng) for c in captions])
            ious = [mask_iou(a, b) for a, b in zip(base, masks(list(swapped), noise, scale))]
            row[f"{kind}_swap_same_noise"] = _summary(ious)
            row[f"{kind}_swap_by_new_{kind}"] = {
                w: _summary([v for v, x in zip(ious, words) if x == w]) for w in sorted(set(words))
            }
        report["scales"][str(scale)] = row
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", nargs="?", default="src/zerocon/assets/shapes/pipeline")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", default="1.5,4", help="comma-separated guidance scales")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scales = [float(s) for s in args.guidance.split(",")]
    report = {"benchmark": "shapes_layout_consistency", "command": " ".join(["python", *sys.argv])}
    report.update(measure(args.pipeline, args.n, args.steps, scales, args.seed))
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
