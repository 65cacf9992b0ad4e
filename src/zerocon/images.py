"""Loading, validating and converting images: the one place where every bad-input error is raised.

Every image that enters the project passes through :func:`load_image`, which returns an 8-bit RGB PIL image
or raises :class:`~zerocon.errors.ZeroconError` with a one-line message. Grayscale, RGBA, palette and 16-bit
images are converted; EXIF orientation is honoured; truncated files, non-images, images that are too small
and decompression bombs are rejected.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from zerocon.errors import ZeroconError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MIN_SIDE = 32
"""Images with a side shorter than this are rejected: there is too little to edit."""
MAX_PIXELS = 40_000_000
"""Images with more pixels than this are rejected before decoding (decompression-bomb guard)."""


def load_image(
    source: str | os.PathLike | Image.Image, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Return ``source`` as an 8-bit RGB image, oriented as its EXIF says.

    Raises ``ZeroconError`` for a missing file, a file that is not an image, a truncated image, an image
    with a side below ``min_side`` or more than ``max_pixels`` pixels.
    """
    if isinstance(source, Image.Image):
        name = "image"
        image = source
        _check_size(image.size, name, min_side, max_pixels)
        return to_rgb(ImageOps.exif_transpose(image))
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise ZeroconError(f"{name}: no such file")
    if path.is_dir():
        raise ZeroconError(f"{name}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                _check_size(opened.size, name, min_side, max_pixels)
                opened.load()
                image = ImageOps.exif_transpose(opened)
                image = to_rgb(image)
    except ZeroconError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ZeroconError(f"{name}: image is too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ZeroconError(f"{name}: not an image file (or a format Pillow cannot read)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ZeroconError(f"{name}: unreadable or truncated image ({_first_line(exc)})") from exc
    return image


def _check_size(size: tuple[int, int], name: str, min_side: int, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ZeroconError(
            f"{name}: image is too large ({width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,})"
        )
    if min(width, height) < min_side:
        raise ZeroconError(
            f"{name}: image is too small ({width}x{height}; each side must be at least {min_side})"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white, 16-bit is rescaled."""
    if image.mode == "RGB":
        return image.copy() if image.readonly else image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-12)
        array = ((array - array.min()) / span * 255.0).round().astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def find_images(inputs: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of candidate image paths (by suffix, not yet opened).

    A folder contributes its files with an image suffix; a file named explicitly is always included, so that a
    bad file given by the user gets its own error. A missing path raises ``ZeroconError``.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(
                sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif path.exists():
            found.append(path)
        else:
            raise ZeroconError(f"{path}: no such file or folder")
    return found


def image_folder(directory: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """The image files of a training folder; an empty or missing folder is a ``ZeroconError``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ZeroconError(f"{directory}: folder not found")
    files = find_images([directory], recursive=recursive)
    if not files:
        raise ZeroconError(f"{directory}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def load_valid_images(paths: Sequence[Path], min_side: int = MIN_SIDE) -> tuple[list[Image.Image], list[str]]:
    """Load every path that is a good image; return the images and one message per skipped file."""
    images, skipped = [], []
    for path in paths:
        try:
            images.append(load_image(path, min_side=min_side))
        except ZeroconError as exc:
            skipped.append(str(exc))
    return images, skipped


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor of shape (3, H, W) in [-1, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [-1, 1] -> RGB PIL image."""
    array = ((tensor.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


def fit_size(size: tuple[int, int], side: int, multiple: int = 8) -> tuple[int, int]:
    """The (width, height) with the longer side ``side`` and ``size``'s aspect ratio, rounded to ``multiple``."""
    width, height = size
    scale = side / max(width, height)
    return (
        max(multiple, round(width * scale / multiple) * multiple),
        max(multiple, round(height * scale / multiple) * multiple),
    )


def labelled_grid(
    rows: Sequence[Sequence[Image.Image]],
    header: Sequence[str] | None = None,
    cell: int | None = None,
) -> Image.Image:
    """Images in a grid (one list per row) under an optional header naming the columns. ``cell``: the side each
    image is resized to (nearest neighbour, for small renders); ``None`` keeps the first image's size."""
    from PIL import ImageDraw

    if cell is not None:
        rows = [[im.resize((cell, cell), Image.Resampling.NEAREST) for im in row] for row in rows]
    cell_w, cell_h = rows[0][0].size
    header_h = 14 if header else 0
    canvas = Image.new("RGB", (max(len(r) for r in rows) * cell_w, header_h + len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(header or []):
        draw.text((c * cell_w + 2, 1), text[: max(1, cell_w // 6)], fill="black")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas.paste(image, (c * cell_w, header_h + r * cell_h))
    return canvas


def side_by_side(
    images: Sequence[Image.Image], labels: Sequence[str] | None = None, height: int = 256
) -> Image.Image:
    """One comparison image: ``images`` resized to a common height, left to right, with optional labels."""
    from PIL import ImageDraw

    resized = [
        im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS) for im in images
    ]
    label_h = 14 if labels else 0
    canvas = Image.new("RGB", (sum(im.width for im in resized), height + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for i, im in enumerate(resized):
        canvas.paste(im, (x, label_h))
        if labels:
            draw.text((x + 2, 1), labels[i], fill="black")
        x += im.width
    return canvas
