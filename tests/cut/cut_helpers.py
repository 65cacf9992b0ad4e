"""Tiny CUT settings and toy data shared by the CUT tests (a step takes a fraction of a second on a CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from zerocon.cut.config import CUTConfig, preset


def speed_module():
    """``benchmarks/cut_speed.py`` loaded by path (its reference-order step is compared with ours)."""
    from module_files import ROOT, load_module_file  # imported here: worker scripts import this file bare

    return load_module_file(ROOT / "benchmarks" / "cut_speed.py")


def tiny(name: str = "cut", **overrides) -> CUTConfig:
    """The preset ``name`` shrunk: 32x32 crops, 16 patches of 16 dims and small networks.

    ResNet presets: 8-channel nets with 2 residual blocks. ``sincut`` (StyleGAN2 networks): ngf 1 and ndf 1
    (G: 16 channels at 32x32 and 32 at 16x16; D: 8 -> 64 channels), 2 + 2 residual blocks, so its NCE
    layers stay 0, 2, 4 (pixels, the down-sampling block, the second residual block).
    """
    settings = dict(
        size=32,
        load_size=36,
        ngf=8,
        ndf=8,
        n_blocks=2,
        nce_layers=(0, 4, 8, 12),
        num_patches=16,
        head_channels=16,
    )
    if name == "sincut":
        settings.update(ngf=1, ndf=1, n_blocks=4, nce_layers=(0, 2, 4))
    settings.update(overrides)
    return preset(name, **settings)


def toy_domains(root: Path, count: int = 4, side: int = 40) -> tuple[Path, Path]:
    """Domain A: dark backgrounds with a red square; domain B: light backgrounds with a blue square."""
    rng = np.random.default_rng(0)
    a, b = root / "trainA", root / "trainB"
    a.mkdir(parents=True, exist_ok=True)
    b.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = np.zeros((side, side, 3), np.uint8)
        img[:] = rng.integers(0, 80, 3)
        x, y = rng.integers(4, side - 20, 2)
        img[y : y + 14, x : x + 14] = (210, 40, 40)
        Image.fromarray(img).save(a / f"a{i}.png")
        img = np.zeros((side, side, 3), np.uint8)
        img[:] = rng.integers(150, 255, 3)
        x, y = rng.integers(4, side - 20, 2)
        img[y : y + 14, x : x + 14] = (40, 40, 210)
        Image.fromarray(img).save(b / f"b{i}.png")
    return a, b
