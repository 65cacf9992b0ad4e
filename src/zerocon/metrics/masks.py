"""Object masks for background LPIPS: from a folder the user made, or from a text-prompted segmenter.

The pix2pix-zero paper found the object with the Detic detector, which has no transformers port; here the
segmenter is CLIPSeg (``CLIPSegForImageSegmentation``, e.g. ``CIDAS/clipseg-rd64-refined``), prompted with the
edit's own words — the source word on the input, the target word on the edit — and the object mask is the
union of the two, so neither the old nor the new object counts as background.

Mask files: one per input image, same file stem (any image format); white (> 127) marks the object.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import IMAGE_SUFFIXES
from zerocon.metrics.common import load_pretrained


def load_mask(path: str | os.PathLike, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) float mask in {0, 1} (1 = object) read from ``path`` and resized (nearest) to ``size`` = (w, h)."""
    path = Path(path)
    try:
        with Image.open(path) as opened:
            gray = opened.convert("L")
    except (OSError, ValueError) as exc:
        raise ZeroconError(f"{path}: unreadable mask image ({exc})") from exc
    if gray.size != tuple(size):
        gray = gray.resize(tuple(size), Image.NEAREST)
    return torch.from_numpy((np.asarray(gray) > 127).astype(np.float32))


def find_mask(folder: str | os.PathLike, stem: str) -> Path:
    """The mask file for the image named ``stem`` in ``folder``; a missing one is a ``ZeroconError``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZeroconError(f"--masks {folder}: folder not found")
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise ZeroconError(f"--masks {folder}: no mask for '{stem}' (expected {stem}.png, white = object)")


@dataclass
class ClipSegSegmenter:
    """Text-prompted object masks from CLIPSeg; ``mask(image, word)`` is (H, W) in {0, 1}."""

    model: Any
    processor: Any
    threshold: float = 0.5

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None, option: str = "--segmenter", threshold: float = 0.5
    ) -> ClipSegSegmenter:
        def load(resolved: str) -> ClipSegSegmenter:
            from transformers import AutoProcessor, CLIPSegForImageSegmentation

            from zerocon.pretrained import from_pretrained_strict

            model = from_pretrained_strict(
                CLIPSegForImageSegmentation, resolved, f"{option} {name_or_path} (CLIPSeg)"
            ).eval()
            return cls(model=model, processor=AutoProcessor.from_pretrained(resolved), threshold=threshold)

        return load_pretrained(option, name_or_path, "CLIPSeg segmentation", load)

    @torch.no_grad()
    def mask(self, image: Image.Image, word: str) -> torch.Tensor:
        inputs = self.processor(text=[word], images=[image], return_tensors="pt", padding=True)
        logits = self.model(**inputs).logits  # (h, w) or (1, h, w)
        logits = logits.reshape(1, 1, *logits.shape[-2:])
        prob = torch.sigmoid(F.interpolate(logits, size=(image.height, image.width), mode="bilinear"))
        return (prob[0, 0] > self.threshold).float()


def missing_masks_error() -> ZeroconError:
    return ZeroconError(
        "background LPIPS needs object masks: pass --masks DIR (white = object, named like the inputs) "
        "or --segmenter HUB_ID_OR_DIR (a CLIPSeg model, e.g. CIDAS/clipseg-rd64-refined)"
    )


def object_masks(
    inputs: Sequence[Image.Image],
    outputs: Sequence[Image.Image],
    names: Sequence[str],
    source: str,
    target: str,
    mask_dir: str | os.PathLike | None = None,
    segmenter: ClipSegSegmenter | None = None,
) -> torch.Tensor:
    """(N, H, W) object masks at each output's size, from ``mask_dir`` or from ``segmenter``.

    With a segmenter, the mask is the union of ``source`` found in the input and ``target`` in the edit.
    """
    if mask_dir is None and segmenter is None:
        raise missing_masks_error()
    masks = []
    for src, out, name in zip(inputs, outputs, names):
        if mask_dir is not None:
            masks.append(load_mask(find_mask(mask_dir, name), out.size))
        else:
            src_resized = src.resize(out.size, Image.BICUBIC) if src.size != out.size else src
            masks.append(torch.maximum(segmenter.mask(src_resized, source), segmenter.mask(out, target)))
    return torch.stack(masks)
