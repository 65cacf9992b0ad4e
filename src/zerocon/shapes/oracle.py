"""The ShapesWorld oracle: reads background colour, object colour, object shape and mask from any image.

It is analytic, so it needs no training and cannot have seen the scenes it judges:

1. background colour: the named background colour nearest to the median of the 3-pixel border;
2. object colour: every pixel is assigned to the nearest of {estimated background colour, the named object
   colours}; the object colour is the named colour with most pixels in its largest connected component
   (a smaller distractor of another colour loses this vote);
3. mask: that largest connected component of the object colour, holes filled;
4. shape: from two scale- and rotation-invariant numbers of the mask — ``fill``, the area over the area of
   the circle through the farthest mask pixel from the centroid (circle 1, square 0.64, triangle 0.41,
   star ~0.4), and ``solidity``, area over convex-hull area (star ~0.6, the others ~1).

The thresholds between classes were set from the analytic values of the shapes, midway, and checked on
training-seed renders only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from zerocon.shapes.world import BACKGROUND_COLORS, OBJECT_COLORS, SHAPES, SIZE

_OBJ_NAMES = list(OBJECT_COLORS)
_OBJ_RGB = np.array([OBJECT_COLORS[c] for c in _OBJ_NAMES], dtype=np.float32)
_BG_NAMES = list(BACKGROUND_COLORS)
_BG_RGB = np.array([BACKGROUND_COLORS[c] for c in _BG_NAMES], dtype=np.float32)

SOLIDITY_STAR = 0.80
"""Masks less solid than this are stars."""
FILL_CIRCLE = 0.80
"""Masks filling more of their enclosing circle than this are circles."""
FILL_SQUARE = 0.52
"""... more than this (and not circles) are squares; the rest triangles."""
MIN_OBJECT_PIXELS = 12


@dataclass
class Reading:
    """What the oracle sees: names (``None`` when nothing is found), the mask and shape statistics."""

    background: str
    color: str | None
    shape: str | None
    mask: np.ndarray
    fill: float = 0.0
    solidity: float = 0.0

    @property
    def centroid(self) -> tuple[float, float] | None:
        ys, xs = np.nonzero(self.mask)
        return (float(xs.mean()), float(ys.mean())) if len(xs) else None

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def _as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.shape[:2] != (SIZE, SIZE):
        arr = np.asarray(
            Image.fromarray(arr.astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        )
    return arr.astype(np.float32)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask."""
    if not mask.any():
        return mask
    labels, _ = ndimage.label(mask)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == counts.argmax()


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (N, 2) points."""
    try:
        return float(ConvexHull(points.astype(np.float64)).volume)
    except QhullError:
        return 0.0


def shape_statistics(mask: np.ndarray) -> tuple[float, float]:
    """(fill, solidity) of a boolean mask; see the module docstring."""
    ys, xs = np.nonzero(mask)
    area = float(len(xs))
    if area == 0:
        return 0.0, 0.0
    cx, cy = xs.mean(), ys.mean()
    radius = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2).max() + 0.5
    fill = area / (np.pi * radius**2)
    edge = mask & ~ndimage.binary_erosion(mask)
    ey, ex = np.nonzero(edge)
    corners = np.concatenate([np.stack([ex + dx, ey + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    solidity = area / max(_hull_area(corners), 1.0)
    return float(fill), float(solidity)


def classify_shape(fill: float, solidity: float) -> str:
    if solidity < SOLIDITY_STAR:
        return "star"
    if fill > FILL_CIRCLE:
        return "circle"
    if fill > FILL_SQUARE:
        return "square"
    return "triangle"


def background_color(image: np.ndarray | Image.Image) -> tuple[str, np.ndarray]:
    """Named background colour and the measured one (median of the 3-pixel border)."""
    arr = _as_array(image)
    border = np.concatenate(
        [
            arr[:3].reshape(-1, 3),
            arr[-3:].reshape(-1, 3),
            arr[:, :3].reshape(-1, 3),
            arr[:, -3:].reshape(-1, 3),
        ]
    )
    measured = np.median(border, axis=0)
    name = _BG_NAMES[int(np.linalg.norm(_BG_RGB - measured, axis=1).argmin())]
    return name, measured


def read_scene(image: np.ndarray | Image.Image) -> Reading:
    """Read background, object colour, shape and mask from a 64x64 RGB image (uint8 array or PIL)."""
    arr = _as_array(image)
    bg_name, bg_rgb = background_color(arr)
    palette = np.concatenate([bg_rgb[None], _OBJ_RGB])  # (7, 3): index 0 = background
    dist = np.linalg.norm(arr[:, :, None, :] - palette[None, None], axis=-1)
    nearest = dist.argmin(-1)
    best: tuple[int, int, np.ndarray] | None = None
    for k in np.unique(nearest):
        if k == 0:
            continue
        comp = _largest_component(nearest == k)
        size = int(comp.sum())
        if best is None or size > best[0]:
            best = (size, int(k), comp)
    if best is None or best[0] < MIN_OBJECT_PIXELS:
        return Reading(background=bg_name, color=None, shape=None, mask=np.zeros((SIZE, SIZE), bool))
    _, k, comp = best
    mask = ndimage.binary_fill_holes(comp)
    fill, solidity = shape_statistics(mask)
    return Reading(
        background=bg_name,
        color=_OBJ_NAMES[k - 1],
        shape=classify_shape(fill, solidity),
        mask=mask,
        fill=fill,
        solidity=solidity,
    )


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


assert set(SHAPES) == {"circle", "square", "triangle", "star"}
