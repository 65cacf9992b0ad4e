"""Training curves of a ShapesWorld run as one figure (``curves.png`` of the bundle)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zerocon.errors import ZeroconError

CURVE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "clip": (
        ("seen_shape_acc", "shape acc"),
        ("seen_color_acc", "colour acc"),
        ("heldout_shape_acc", "shape acc, held-out captions"),
    ),
    "vae": (("psnr_seen", "PSNR dB"), ("psnr_heldout", "PSNR dB, held-out captions")),
    "vae_decoder": (("psnr_seen", "PSNR dB"), ("psnr_heldout", "PSNR dB, held-out captions")),
    "unet": (
        ("heldout_shape_and_color", "oracle shape+colour, held-out captions"),
        ("heldout_color", "oracle colour"),
        ("heldout_shape", "oracle shape"),
    ),
    "blip": (("exact_seen", "exact caption match"), ("exact_heldout", "exact match, held-out captions")),
}
"""Per stage, the curve.jsonl keys plotted and their labels."""
BARS = {"clip": 0.95, "vae": 30.0, "vae_decoder": 30.0, "unet": 0.90, "blip": 0.90}
"""Per stage, the target drawn as a dashed line."""


def plot_curves(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """One panel per stage: each recorded metric against wall-clock minutes, with the stage's target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    stages = [s for s in CURVE_KEYS if (run / s / "curve.jsonl").exists()]
    if not stages:
        raise ZeroconError(f"no curve.jsonl under {run}")
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [
            json.loads(line)
            for line in (run / stage / "curve.jsonl").read_text().splitlines()
            if line.strip()
        ]
        for key, label in CURVE_KEYS[stage]:
            pts = [(r["seconds"] / 60, r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=label)
        ax.axhline(BARS[stage], ls="--", c="gray", lw=1, label="target")
        ax.set_title(stage)
        ax.set_xlabel("minutes (shared 2-core CPU)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
