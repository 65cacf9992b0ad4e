"""Helpers shared by the metric modules: loading pretrained networks with clear errors, pairing folders,
batching images into tensors.

Every pretrained network a metric needs comes from a hub id or a local folder/file that the user names; when
it cannot be loaded the error says which option names it (``--clip``, ``--dino`` …). Nothing falls back to
random weights or to a default number.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import find_images, image_folder, load_image, pil_to_tensor

T = TypeVar("T")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_pretrained(
    option: str, name_or_path: str | os.PathLike | None, what: str, loader: Callable[[str], T]
) -> T:
    """Call ``loader`` on a resolved hub id / folder; turn any loading failure into a ``ZeroconError``.

    ``option`` is the command-line option (e.g. ``--clip``) that names the network, so the message tells the
    user exactly what to pass.
    """
    from zerocon.models import resolve_model

    if name_or_path is None or str(name_or_path).strip() == "":
        raise ZeroconError(f"{what} needs a pretrained network: pass {option} HUB_ID_OR_DIR")
    text = str(name_or_path)
    looks_like_path = text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
    if looks_like_path and not Path(text).expanduser().exists():
        raise ZeroconError(f"{option} {text}: no such file or folder (the {what} network)")
    resolved = resolve_model(name_or_path)
    try:
        return loader(resolved)
    except ZeroconError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZeroconError(
            f"{option} {name_or_path}: cannot load the {what} network ({first}). It must be a local folder "
            f"made by save_pretrained or a hub id in the local Hugging Face cache; download it where you "
            f"have a network and pass {option} DIR"
        ) from exc


EDIT_FILE = "edit.png"
"""The edited image inside each per-photo folder that ``zerocon edit`` writes (``OUT/<name>/edit.png``)."""


def _output_images(outputs: Path) -> list[tuple[str, Path]]:
    """(name, file) of every edit: top-level images by stem, and ``<name>/edit.png`` folders by name."""
    if not outputs.is_dir():
        raise ZeroconError(f"{outputs}: folder not found")
    found = [(p.stem, p) for p in find_images([outputs])]
    found += [(d.name, d / EDIT_FILE) for d in sorted(outputs.iterdir()) if (d / EDIT_FILE).is_file()]
    if not found:
        raise ZeroconError(
            f"{outputs}: no edited images (image files, or <name>/{EDIT_FILE} as 'zerocon edit' writes)"
        )
    return found


def pair_folders(inputs: str | os.PathLike, outputs: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Match each edit to the input image with the same name.

    Edits are image files named like their inputs, or the ``<name>/edit.png`` folders of ``zerocon edit``.
    Every edit must have an input (otherwise it cannot be scored); inputs without an edit are ignored so that
    a partial run can still be evaluated.
    """
    input_files = {p.stem: p for p in image_folder(inputs, recursive=False)}
    pairs, missing = [], []
    for name, out in _output_images(Path(outputs)):
        src = input_files.get(name)
        if src is None:
            missing.append(out.name if out.name != EDIT_FILE else f"{name}/{EDIT_FILE}")
        else:
            pairs.append((src, out))
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ZeroconError(
            f"{outputs}: {len(missing)} edit(s) have no input with the same name in {inputs} "
            f"({shown}); name each edit like its input"
        )
    return pairs


def to_batch(images: Sequence[Image.Image], size: tuple[int, int] | None = None) -> torch.Tensor:
    """PIL images -> (N, 3, H, W) in [-1, 1]; resized (bicubic) to ``size`` = (width, height) if given."""
    tensors = []
    for im in images:
        if size is not None and im.size != tuple(size):
            im = im.resize(tuple(size), Image.BICUBIC)
        tensors.append(pil_to_tensor(im))
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes cannot be batched: {sorted(shapes)}; pass size=")
    return torch.stack(tensors)


def load_images(paths: Sequence[Path]) -> list[Image.Image]:
    """Load every path through :func:`zerocon.images.load_image` (bad files raise ``ZeroconError``)."""
    return [load_image(p) for p in paths]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> ImageNet-normalised (what DINO and torchvision backbones expect)."""
    x = (images + 1.0) / 2.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resize_batch(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a (N, C, H, W) batch to ``size`` = (height, width)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
