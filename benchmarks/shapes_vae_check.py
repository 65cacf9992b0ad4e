"""What a ShapesWorld VAE keeps: PSNR and the oracle's reading of its reconstructions, side by side.

For each VAE folder, held-out validation scenes (seen and held-out captions) are encoded (posterior mode) and
decoded; reported per split: mean PSNR, the fraction of reconstructions the analytic oracle reads with the
scene's shape, colour and background, and the mean mask IoU against the true mask. A latent grid change (e.g.
Stable Diffusion's factor 8, 64 px -> 8x8) is judged by these before a UNet is trained on it.

Usage: ``python benchmarks/shapes_vae_check.py VAE_DIR [VAE_DIR ...] [--n 256] [--out FILE.json]``; prints
one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from zerocon.io import emit_report


@torch.no_grad()
def check(vae_dir: str, n: int) -> dict:
    from diffusers import AutoencoderKL

    from zerocon.shapes.data import val_split
    from zerocon.shapes.oracle import mask_iou, read_scene
    from zerocon.shapes.train import psnr, vae_factor
    from zerocon.shapes.world import BACKGROUND_COLORS, OBJECT_COLORS, SHAPES

    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    factor = vae_factor(vae)
    result = {
        "vae": vae_dir,
        "latent": [vae.config.latent_channels, 64 // factor, 64 // factor],
        "parameters": sum(p.numel() for p in vae.parameters()),
    }
    for name, held_out in (("seen_captions", False), ("heldout_captions", True)):
        batch = val_split(n, held_out=held_out)
        hits = {"shape": 0, "color": 0, "background": 0}
        ious, psnrs = [], []
        for start in range(0, len(batch), 64):
            x = batch.as_float(slice(start, start + 64))
            rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
            psnrs.append(psnr(rec, x))
            pixels = ((rec.permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
            for k, image in enumerate(pixels):
                i = start + k
                got = read_scene(image)
                hits["shape"] += got.shape == SHAPES[int(batch.shape_idx[i])]
                hits["color"] += got.color == list(OBJECT_COLORS)[int(batch.color_idx[i])]
                hits["background"] += got.background == list(BACKGROUND_COLORS)[int(batch.background_idx[i])]
                ious.append(mask_iou(got.mask, batch.masks[i].numpy()))
        result[name] = {
            "n": len(batch),
            "psnr_db": round(float(torch.cat(psnrs).mean()), 3),
            **{f"oracle_{k}": round(v / len(batch), 4) for k, v in hits.items()},
            "mask_iou": round(float(np.mean(ious)), 4),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vaes", nargs="+", help="AutoencoderKL folders")
    parser.add_argument("--n", type=int, default=256, help="scenes per split")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = {"benchmark": "shapes_vae_check", "command": " ".join(["python", *sys.argv]), "vaes": []}
    for folder in args.vaes:
        report["vaes"].append(check(folder, args.n))
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
