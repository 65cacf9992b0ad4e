"""ShapesWorld scenes: one coloured shape on a (possibly textured) background, with ground truth.

A scene is fully described by a :class:`SceneSpec` (shape, colours, size, position, rotation, texture,
optional distractor) and rendered deterministically by :func:`render`: the same spec always gives the same
pixels. :func:`sample_spec` draws a spec from a seed, so ``render(sample_spec(seed))`` is the scene of that
seed. Shapes are drawn at 4x resolution and box-filtered down, which gives anti-aliased edges and a soft
coverage map; the object mask is the set of pixels the main object covers at least half.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zerocon.errors import ZeroconError

SIZE = 64
"""Side of every scene in pixels."""
SUPERSAMPLE = 4
"""Shapes are drawn at ``SIZE * SUPERSAMPLE`` and box-filtered down (anti-aliasing)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 190),
    "orange": (245, 140, 30),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (235, 235, 235),
    "black": (25, 25, 25),
    "pink": (245, 180, 200),
}
TEXTURES: tuple[str, ...] = ("none", "stripes", "blotches")
TEXTURE_AMPLITUDE = 14.0
"""Peak deviation (0-255 scale) a texture adds to the background colour."""
STAR_INNER_RATIO = 0.45
"""Inner radius of the five-pointed star relative to its outer radius."""

VOCABULARY: tuple[str, ...] = ("a", "on", "background", *SHAPES, *OBJECT_COLORS, *BACKGROUND_COLORS)
"""Every word a ShapesWorld caption can contain."""


@dataclass(frozen=True)
class ObjectSpec:
    """One shape: its kind, colour name, centre (x, y in pixels), circumradius (pixels), rotation (deg)."""

    shape: str
    color: str
    center: tuple[float, float]
    radius: float
    rotation: float


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render a scene; the caption mentions the main object and background only."""

    obj: ObjectSpec
    background: str
    texture: str = "none"
    texture_phase: tuple[float, ...] = ()
    """Parameters of the texture: stripes (angle, period, phase); blotches (seed)."""
    distractor: ObjectSpec | None = None

    @property
    def caption(self) -> str:
        return caption_for(self.obj.shape, self.obj.color, self.background)

    def labels(self) -> dict[str, Any]:
        """Attribute labels as plain JSON-able values."""
        out = asdict(self)
        out["caption"] = self.caption
        out["shape"], out["color"] = self.obj.shape, self.obj.color
        return out

    def with_object(self, **changes: Any) -> SceneSpec:
        """The same scene with attributes of the main object changed (e.g. ``color="blue"``)."""
        return replace(self, obj=replace(self.obj, **changes))


@dataclass
class Scene:
    """A rendered scene: ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool of the main object, ``coverage``
    (H, W) float32 in [0, 1] of the main object, and its ``spec``."""

    spec: SceneSpec
    image: np.ndarray
    mask: np.ndarray
    coverage: np.ndarray
    seed: int | None = None

    @property
    def caption(self) -> str:
        return self.spec.caption

    def pil(self) -> Image.Image:
        return Image.fromarray(self.image)


def caption_for(shape: str, color: str, background: str) -> str:
    """The canonical caption, e.g. ``"a red circle on a gray background"``."""
    return f"a {color} {shape} on a {background} background"


def colour_alignment(color: str, other: str, background: str) -> float:
    """Cosine of the angle between two object colours seen from a background colour (RGB).

    Below 0 the background ``g`` lies between them (red and blue from gray): on the object's pixels
    ``|a - b|^2 > |a - g|^2 + |b - g|^2``, so the scene with the object recoloured in place is farther from the
    original than the two changes of the other reading together (the object gone, the recoloured one drawn
    elsewhere), and a model of this world reads a noised, recaptioned object as moved rather than recoloured."""
    ground = np.asarray(BACKGROUND_COLORS[background], np.float64)
    a, b = (np.asarray(OBJECT_COLORS[c], np.float64) - ground for c in (color, other))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def parse_caption(caption: str) -> dict[str, str] | None:
    """Inverse of :func:`caption_for`; ``None`` if ``caption`` is not a well-formed ShapesWorld caption."""
    words = caption.strip().lower().split()
    if len(words) != 7 or words[0] != "a" or words[3:5] != ["on", "a"] or words[6] != "background":
        return None
    color, shape, background = words[1], words[2], words[5]
    if color not in OBJECT_COLORS or shape not in SHAPES or background not in BACKGROUND_COLORS:
        return None
    return {"color": color, "shape": shape, "background": background}


def all_captions() -> list[str]:
    """Every caption of the world, in a fixed order (shape-major)."""
    return [caption_for(s, c, b) for s in SHAPES for c in OBJECT_COLORS for b in BACKGROUND_COLORS]


@dataclass(frozen=True)
class SceneFilter:
    """Which attribute values a sampled scene may take; ``None`` means all of them."""

    shapes: Sequence[str] | None = None
    colors: Sequence[str] | None = None
    backgrounds: Sequence[str] | None = None
    distractor_prob: float = 0.3
    """Probability of a second, smaller object of another colour."""
    texture_prob: float = 0.5
    """Probability that the background is textured (stripes or blotches)."""
    min_radius: float = 11.0
    max_radius: float = 20.0
    captions: Sequence[str] | None = field(default=None)
    """If set, only scenes whose caption is in this list (e.g. a held-out split)."""

    def check(self) -> None:
        for name, values, known in (
            ("shape", self.shapes, SHAPES),
            ("colour", self.colors, OBJECT_COLORS),
            ("background", self.backgrounds, BACKGROUND_COLORS),
        ):
            for value in values or ():
                if value not in known:
                    raise ZeroconError(f"unknown {name} '{value}'; known: {', '.join(known)}")
            if values is not None and len(values) == 0:
                raise ZeroconError(f"the {name} filter is empty")
        if self.captions is not None:
            bad = [c for c in self.captions if parse_caption(c) is None]
            if bad:
                raise ZeroconError(f"not a ShapesWorld caption: '{bad[0]}'")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([0x5A0E, int(seed)])


def _sample_object(rng: np.random.Generator, shape: str, color: str, r_lo: float, r_hi: float) -> ObjectSpec:
    radius = float(rng.uniform(r_lo, r_hi))
    margin = radius + 2.0
    cx, cy = (float(v) for v in rng.uniform(margin, SIZE - margin, size=2))
    rotation = 0.0 if shape == "circle" else float(rng.uniform(0.0, 360.0))
    return ObjectSpec(shape, color, (cx, cy), radius, rotation)


def sample_spec(seed: int, flt: SceneFilter | None = None) -> SceneSpec:
    """Draw the scene of ``seed`` under ``flt`` (deterministic: same seed and filter, same spec)."""
    flt = flt or SceneFilter()
    rng = _rng(seed)
    if flt.captions is not None:
        parsed = parse_caption(flt.captions[int(rng.integers(len(flt.captions)))])
        assert parsed is not None
        shape, color, background = parsed["shape"], parsed["color"], parsed["background"]
    else:
        shape = str(rng.choice(list(flt.shapes or SHAPES)))
        color = str(rng.choice(list(flt.colors or OBJECT_COLORS)))
        background = str(rng.choice(list(flt.backgrounds or BACKGROUND_COLORS)))
    obj = _sample_object(rng, shape, color, flt.min_radius, flt.max_radius)
    texture, phase = "none", ()
    if rng.random() < flt.texture_prob:
        texture = str(rng.choice(["stripes", "blotches"]))
        if texture == "stripes":
            phase = (
                float(rng.uniform(0, 180)),
                float(rng.uniform(10, 20)),
                float(rng.uniform(0, 2 * math.pi)),
            )
        else:
            phase = (float(rng.integers(0, 2**31 - 1)),)
    distractor = None
    if rng.random() < flt.distractor_prob:
        other_colors = [c for c in OBJECT_COLORS if c != color]
        d_color = str(rng.choice(other_colors))
        d_shape = str(rng.choice(list(SHAPES)))
        for _ in range(20):
            cand = _sample_object(rng, d_shape, d_color, 4.5, 7.0)
            gap = math.dist(cand.center, obj.center) - cand.radius - obj.radius
            if gap > 3.0:
                distractor = cand
                break
    return SceneSpec(
        obj=obj, background=background, texture=texture, texture_phase=phase, distractor=distractor
    )


def _vertices(obj: ObjectSpec, scale: float) -> list[tuple[float, float]]:
    cx, cy = obj.center[0] * scale, obj.center[1] * scale
    r = obj.radius * scale
    rot = math.radians(obj.rotation)
    if obj.shape == "square":
        angles, radii = [rot + math.pi / 4 + k * math.pi / 2 for k in range(4)], [r] * 4
    elif obj.shape == "triangle":
        angles, radii = [rot - math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)], [r] * 3
    elif obj.shape == "star":
        angles = [rot - math.pi / 2 + k * math.pi / 5 for k in range(10)]
        radii = [r if k % 2 == 0 else r * STAR_INNER_RATIO for k in range(10)]
    else:
        raise ValueError(obj.shape)
    return [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angles, radii)]


def object_coverage(obj: ObjectSpec) -> np.ndarray:
    """(SIZE, SIZE) float32 fraction of each pixel covered by ``obj`` (anti-aliased)."""
    big = SIZE * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if obj.shape == "circle":
        cx, cy, r = obj.center[0] * SUPERSAMPLE, obj.center[1] * SUPERSAMPLE, obj.radius * SUPERSAMPLE
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_vertices(obj, SUPERSAMPLE), fill=255)
    arr = np.asarray(canvas, dtype=np.float32).reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE)
    return arr.mean(axis=(1, 3)) / 255.0


def background_image(spec: SceneSpec) -> np.ndarray:
    """(SIZE, SIZE, 3) float32 background on the 0-255 scale, texture included."""
    base = np.asarray(BACKGROUND_COLORS[spec.background], dtype=np.float32)
    img = np.broadcast_to(base, (SIZE, SIZE, 3)).copy()
    if spec.texture == "stripes":
        angle, period, phase = spec.texture_phase
        yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        t = math.radians(angle)
        wave = np.sin(2 * math.pi * (xx * math.cos(t) + yy * math.sin(t)) / period + phase)
        img += TEXTURE_AMPLITUDE * wave[..., None]
    elif spec.texture == "blotches":
        rng = np.random.default_rng(int(spec.texture_phase[0]))
        coarse = rng.uniform(-1, 1, size=(6, 6)).astype(np.float32)
        field_img = Image.fromarray(coarse, mode="F").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        wave = np.clip(np.asarray(field_img), -1, 1)
        img += TEXTURE_AMPLITUDE * wave[..., None]
    return img


def render(spec: SceneSpec, seed: int | None = None) -> Scene:
    """Render ``spec`` to pixels, its main-object mask and coverage."""
    img = background_image(spec)
    if spec.distractor is not None:
        cov_d = object_coverage(spec.distractor)[..., None]
        img = img * (1 - cov_d) + np.asarray(OBJECT_COLORS[spec.distractor.color], np.float32) * cov_d
    cov = object_coverage(spec.obj)
    img = img * (1 - cov[..., None]) + np.asarray(OBJECT_COLORS[spec.obj.color], np.float32) * cov[..., None]
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(spec=spec, image=image, mask=cov >= 0.5, coverage=cov.astype(np.float32), seed=seed)


def render_seed(seed: int, flt: SceneFilter | None = None) -> Scene:
    """The scene of ``seed``: ``render(sample_spec(seed, flt))``."""
    return render(sample_spec(seed, flt), seed=seed)


def iter_scenes(n: int, seed: int = 0, flt: SceneFilter | None = None) -> Iterator[Scene]:
    """``n`` scenes with consecutive seeds ``seed, seed + 1, ...`` under ``flt``."""
    flt = flt or SceneFilter()
    flt.check()
    for i in range(n):
        yield render_seed(seed + i, flt)


def scenes_to_arrays(scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
    """Stack images (N, H, W, 3) uint8 and masks (N, H, W) bool."""
    return np.stack([s.image for s in scenes]), np.stack([s.mask for s in scenes])


def write_dataset(
    folder: str | os.PathLike, n: int, seed: int = 0, flt: SceneFilter | None = None, masks: bool = True
) -> Path:
    """Write ``n`` scenes as ``images/scene_XXXXXX.png``, their masks as ``masks/scene_XXXXXX.png`` (same
    names, white = object) and ``labels.jsonl``.

    Images and masks live in separate folders, so ``images/`` is a clean training folder (for
    ``zerocon cut train``) and ``masks/`` is what ``zerocon eval edits --masks`` expects. Each line of
    ``labels.jsonl`` holds the image path (relative to ``folder``), the seed, the caption and every attribute
    label. Files are written atomically; the labels file last, so its presence means the folder is complete.
    """
    from zerocon.io import save_image_atomic, write_bytes

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (folder / "masks").mkdir(exist_ok=True)
    lines = []
    for scene in iter_scenes(n, seed, flt):
        name = f"scene_{scene.seed:06d}.png"
        save_image_atomic(scene.pil(), folder / "images" / name)
        record = {"file": f"images/{name}", "seed": scene.seed, **scene.spec.labels()}
        if masks:
            save_image_atomic(Image.fromarray(scene.mask.astype(np.uint8) * 255), folder / "masks" / name)
            record["mask"] = f"masks/{name}"
        lines.append(json.dumps(record, sort_keys=True))
    write_bytes(folder / "labels.jsonl", ("\n".join(lines) + "\n").encode())
    return folder
