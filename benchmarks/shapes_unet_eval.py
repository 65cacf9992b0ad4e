"""Text-to-image accuracy of a ShapesWorld pipeline's UNet, judged by the analytic oracle.

Generates ``--n`` images per split (seen captions / held-out captions, cycling through each pool) with the
pipeline folder's own UNet, VAE and text encoder (DDIM, ``--steps`` steps, classifier-free guidance
``--guidance``), reads each with the oracle and reports per split: the fraction with the caption's shape,
colour, both, and background, with 95 % intervals, the per-shape accuracy and the shape confusion. A grid of
the first generations of each split is written next to the JSON (``--grid``), to see the corners.

Usage: ``python benchmarks/shapes_unet_eval.py [PIPELINE] [--n 256] [--steps 50] [--out FILE.json]
[--grid FILE.png]``; PIPELINE defaults to the bundle (``src/zerocon/assets/shapes/pipeline``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from zerocon.io import emit_report


def _interval(hits: int, n: int) -> dict[str, float]:
    rate = hits / n
    return {"rate": round(rate, 4), "ci95": round(1.96 * math.sqrt(rate * (1 - rate) / n), 4), "n": n}


@torch.no_grad()
def evaluate(
    folder: str, n: int, steps: int, guidance: float, seed: int, batch: int = 64
) -> tuple[dict, dict]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from zerocon.models import resolve_model
    from zerocon.shapes.oracle import read_scene
    from zerocon.shapes.train import _eval_captions, generate, load_text_encoder
    from zerocon.shapes.world import parse_caption

    location = Path(resolve_model(folder))
    tokenizer, text_encoder = load_text_encoder(location)
    unet = UNet2DConditionModel.from_pretrained(location, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(location, subfolder="vae").eval()
    report: dict = {
        "pipeline": folder,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "latent": [unet.config.in_channels, unet.config.sample_size, unet.config.sample_size],
    }
    samples = {}
    for name, held_out in (("seen_captions", False), ("heldout_captions", True)):
        captions = _eval_captions(n, held_out=held_out)
        images = torch.cat(
            [
                generate(
                    unet, vae, text_encoder, tokenizer, captions[i : i + batch], steps, guidance, seed + i
                )
                for i in range(0, n, batch)
            ]
        )
        hits = Counter()
        per_shape: dict[str, list[int]] = {}
        confusion: Counter = Counter()
        for image, caption in zip(images, captions):
            want = parse_caption(caption)
            got = read_scene(((image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
            shape_ok, color_ok = got.shape == want["shape"], got.color == want["color"]
            hits["shape"] += shape_ok
            hits["color"] += color_ok
            hits["shape_and_color"] += shape_ok and color_ok
            hits["background"] += got.background == want["background"]
            per_shape.setdefault(want["shape"], []).append(int(shape_ok))
            if not shape_ok:
                confusion[f"{want['shape']}->{got.shape}"] += 1
        report[name] = {
            **{k: _interval(hits[k], n) for k in ("shape_and_color", "shape", "color", "background")},
            "shape_acc_by_shape": {s: round(float(np.mean(v)), 4) for s, v in sorted(per_shape.items())},
            "shape_confusion": dict(confusion.most_common()),
        }
        samples[name] = images[:32]
    return report, samples


def save_grid(samples: dict, path: Path) -> None:
    from PIL import Image

    rows = []
    for images in samples.values():
        pixels = ((images.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        for start in range(0, len(pixels), 16):
            rows.append(np.concatenate(list(pixels[start : start + 16]), axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", nargs="?", default="shapes")
    parser.add_argument("--n", type=int, default=256, help="generations per split")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--grid", type=Path, default=None, help="a PNG of the first 32 generations per split")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report, samples = evaluate(args.pipeline, args.n, args.steps, args.guidance, args.seed)
    report = {
        "benchmark": "shapes_unet_eval",
        "command": " ".join(["python", *sys.argv]),
        "ddim_steps": args.steps,
        "guidance_scale": args.guidance,
        **report,
    }
    if args.grid:
        save_grid(samples, args.grid)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
