"""Training data for LANIT: a folder of unlabeled images, each item a source image and two references.

Images are resized (shorter side) and centre-cropped to ``img_size`` once, kept in memory as 8-bit tensors,
and augmented per item with the generator the trainer passes in: with probability 0.5 a random resized crop
(scale 0.8-1, aspect 0.9-1.1, as LANIT's loader) and a horizontal flip with probability 0.5. The references
(the target-style images, whose pseudo-labels are the target labels) are drawn from the same folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import image_folder, load_image, pil_to_tensor
from zerocon.training import TrainingDataset


def square_image(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop to a ``size`` x ``size`` square."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def load_square_tensor(path: str | os.PathLike | Image.Image, size: int) -> torch.Tensor:
    """An image file as a (3, size, size) tensor in [-1, 1] (all bad-input errors from :func:`load_image`)."""
    return pil_to_tensor(square_image(load_image(path, min_side=8), size))


def random_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.8, 1.0),
    ratio: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """Crop a random area share in ``scale`` with aspect in ``ratio`` and resize back to x's size."""
    _, height, width = x.shape
    u = torch.rand(2, generator=generator)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * float(u[0]))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * float(u[1])
    aspect = math.exp(log_r)
    w = min(width, max(1, round(math.sqrt(area * aspect))))
    h = min(height, max(1, round(math.sqrt(area / aspect))))
    pos = torch.rand(2, generator=generator)
    top = int(float(pos[0]) * (height - h + 1))
    left = int(float(pos[1]) * (width - w + 1))
    crop = x[:, top : top + h, left : left + w]
    return F.interpolate(crop[None], size=(height, width), mode="bilinear", align_corners=False)[0]


class LanitDataset(TrainingDataset):
    """Unlabeled images; ``item`` returns ``{"x", "ref", "ref2"}`` tensors in [-1, 1]."""

    def __init__(self, paths: Sequence[Path], img_size: int, augment: bool = True) -> None:
        self.img_size, self.augment = img_size, augment
        self.paths: list[Path] = []
        self.skipped: list[str] = []
        images = []
        for path in paths:
            try:
                tensor = load_square_tensor(path, img_size)
            except ZeroconError as exc:
                self.skipped.append(str(exc))
                continue
            images.append(((tensor + 1.0) * 127.5).round().to(torch.uint8))
            self.paths.append(Path(path))
        if not images:
            raise ZeroconError(
                "no usable training images" + (f" ({self.skipped[0]})" if self.skipped else "")
            )
        self.images = torch.stack(images)  # (n, 3, S, S) uint8

    @classmethod
    def from_folder(cls, directory: str | os.PathLike, img_size: int, augment: bool = True) -> LanitDataset:
        return cls(image_folder(directory), img_size, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def _get(self, index: int, generator: torch.Generator) -> torch.Tensor:
        x = self.images[index].float() / 127.5 - 1.0
        if self.augment:
            if float(torch.rand(1, generator=generator)) < 0.5:
                x = random_resized_crop(x, generator)
            if float(torch.rand(1, generator=generator)) < 0.5:
                x = x.flip(-1)
        return x

    def item(self, index: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        refs = torch.randint(len(self), (2,), generator=generator)
        return {
            "x": self._get(index, generator),
            "ref": self._get(int(refs[0]), generator),
            "ref2": self._get(int(refs[1]), generator),
            "index": torch.tensor(index),
        }
