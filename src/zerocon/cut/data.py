"""Training data for CUT: two unpaired image folders, or one image per domain (SinCUT).

Every random choice (the partner B image, crop position, flip, zoom) is drawn from the generator the trainer
passes to :meth:`item`, so the data order and augmentations are part of exact resume. Unreadable or
non-image files are skipped and counted in one warning; grayscale and RGBA images are converted to RGB.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import image_folder, load_valid_images
from zerocon.training import TrainingDataset


def resolve_domains(
    domain_a: str | os.PathLike | None, domain_b: str | os.PathLike | None, root: str | os.PathLike | None
) -> tuple[Path, Path]:
    """The two domain folders: given explicitly, or ``ROOT/trainA`` and ``ROOT/trainB``."""
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise ZeroconError(f"{root}: folder not found")
        a, b = root / "trainA", root / "trainB"
        if not (a.is_dir() and b.is_dir()):
            raise ZeroconError(
                f"{root}: expected sub-folders trainA/ and trainB/ (or give --domain-a/--domain-b)"
            )
        return a, b
    if domain_a is None or domain_b is None:
        raise ZeroconError(
            "give --domain-a DIR and --domain-b DIR, or one DATA folder holding trainA/ and trainB/"
        )
    return Path(domain_a), Path(domain_b)


def load_domain(
    folder: str | os.PathLike, resize_to: int | None = None, max_side: int | None = None
) -> list[torch.Tensor]:
    """All good images of ``folder`` as uint8 tensors (3, H, W); bad files are skipped with one warning.

    ``resize_to`` resizes each image to a ``resize_to`` square (CUT's ``resize_and_crop``); ``max_side`` instead
    shrinks images whose longer side exceeds it, keeping the aspect ratio. Images are converted while loading
    so that a large folder is never held at full resolution.
    """
    paths = image_folder(folder)
    tensors: list[torch.Tensor] = []
    skipped: list[str] = []
    for start in range(0, len(paths), 32):
        images, bad = load_valid_images(paths[start : start + 32])
        skipped.extend(bad)
        for image in images:
            if resize_to is not None:
                image = image.resize((resize_to, resize_to), Image.BICUBIC)
            elif max_side is not None and max(image.size) > max_side:
                scale = max_side / max(image.size)
                image = image.resize(
                    (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC
                )
            tensors.append(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous())
    if skipped:
        preview = "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"{folder}: skipped {len(skipped)} of {len(paths)} files that are not readable images ({preview})",
            stacklevel=2,
        )
    if not tensors:
        raise ZeroconError(f"{folder}: none of the {len(paths)} image files could be read")
    return tensors


def _to_float(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 127.5 - 1.0


def random_crop_flip(image: torch.Tensor, size: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` x ``size`` crop of a (3, H, W) image, flipped horizontally with probability 1/2."""
    _, height, width = image.shape
    if height < size or width < size:
        raise ZeroconError(f"image of {width}x{height} is smaller than the crop size {size}")
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    crop = image[:, top : top + size, left : left + size]
    do_flip = bool(torch.rand((), generator=generator) < 0.5)
    if flip and do_flip:
        crop = crop.flip(-1)
    return crop


class UnpairedDataset(TrainingDataset):
    """Domain A and domain B images; item ``i`` is A image ``i mod |A|`` with a random B image.

    Its length is ``max(|A|, |B|)``. Images are resized to ``load_size`` squares once, then every item is a
    random ``size`` crop with an optional horizontal flip, in [-1, 1]. From step ``plain_from_step`` on (the
    learning-rate decay phase, as in the reference code) images are resized straight to ``size`` instead:
    no resize-crop augmentation, flips only.
    """

    def __init__(
        self,
        domain_a: str | os.PathLike,
        domain_b: str | os.PathLike,
        size: int = 256,
        load_size: int | None = None,
        flip: bool = True,
        plain_from_step: int | None = None,
    ) -> None:
        self.size = size
        self.load_size = load_size if load_size is not None else size
        if self.load_size < size:
            raise ZeroconError(f"load size {self.load_size} is smaller than the crop size {size}")
        self.flip = flip
        self.plain_from_step = plain_from_step
        self.domains = (domain_a, domain_b)
        self.images_a = load_domain(domain_a, resize_to=self.load_size)
        self.images_b = load_domain(domain_b, resize_to=self.load_size)
        self._plain: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._use_plain = False

    def __len__(self) -> int:
        return max(len(self.images_a), len(self.images_b))

    def set_step(self, step: int) -> None:
        self._use_plain = (
            self.plain_from_step is not None and step >= self.plain_from_step and self.load_size != self.size
        )
        if self._use_plain and self._plain is None:
            self._plain = tuple(load_domain(d, resize_to=self.size) for d in self.domains)

    def item(self, index: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images_a, images_b = self._plain if self._use_plain else (self.images_a, self.images_b)
        a = images_a[index % len(images_a)]
        b = images_b[int(torch.randint(0, len(images_b), (1,), generator=generator))]
        return (
            _to_float(random_crop_flip(a, self.size, self.flip, generator)),
            _to_float(random_crop_flip(b, self.size, self.flip, generator)),
        )


class SingleImageDataset(TrainingDataset):
    """SinCUT's data: one A image and one B image; each item is a pair of crops of randomly zoomed copies.

    The images are first shrunk so their longer side is at most ``load_size``; each item zooms A and B by one
    factor drawn uniformly from ``zoom_range`` (never below the crop size) and crops ``size`` squares at
    random positions. ``length`` is nominal (the number of items per "epoch").
    """

    def __init__(
        self,
        domain_a: str | os.PathLike,
        domain_b: str | os.PathLike,
        size: int = 64,
        load_size: int = 1024,
        zoom_range: tuple[float, float] = (1.0 / 3.0, 1.0),
        flip: bool = True,
        length: int = 1000,
    ) -> None:
        self.size, self.zoom_range, self.flip, self.length = size, zoom_range, flip, length
        a = load_domain(domain_a, max_side=load_size)
        b = load_domain(domain_b, max_side=load_size)
        if len(a) != 1 or len(b) != 1:
            raise ZeroconError(
                f"sincut trains on exactly one image per domain; found {len(a)} in A and {len(b)} in B"
            )
        self.image_a, self.image_b = _to_float(a[0]), _to_float(b[0])

    def __len__(self) -> int:
        return self.length

    def _zoomed_crop(self, image: torch.Tensor, zoom: float, generator: torch.Generator) -> torch.Tensor:
        _, height, width = image.shape
        zoom = max(zoom, self.size / min(height, width))
        new_size = (max(self.size, round(height * zoom)), max(self.size, round(width * zoom)))
        zoomed = torch.nn.functional.interpolate(
            image[None], size=new_size, mode="bilinear", align_corners=False, antialias=True
        )[0]
        return random_crop_flip(zoomed, self.size, self.flip, generator)

    def item(self, index: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.zoom_range
        zoom = low + (high - low) * float(torch.rand((), generator=generator))
        return self._zoomed_crop(self.image_a, zoom, generator), self._zoomed_crop(
            self.image_b, zoom, generator
        )
