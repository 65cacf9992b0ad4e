"""ShapesWorld training data: fixed splits of rendered scenes, held-out captions, and tensors for training.

The world has 96 captions; :data:`HELD_OUT_CAPTIONS` (8 of them, chosen so that every shape, colour and
background still occurs in training) are never seen by any model during training, so metrics on them measure
composition, not memorisation. Seeds of the splits are disjoint ranges: training ``[0, n)``, validation
``VAL_SEED + i``, ShapesBench ``BENCH_SEED + i``, and edit-setting tuning ``TUNE_SEED + i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zerocon.shapes.world import (
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    SHAPES,
    SceneFilter,
    all_captions,
    caption_for,
    iter_scenes,
)

_COLORS = list(OBJECT_COLORS)
_BGS = list(BACKGROUND_COLORS)
HELD_OUT_CAPTIONS: tuple[str, ...] = tuple(
    caption_for(SHAPES[i % 4], _COLORS[i % 6], _BGS[(i // 2) % 4]) for i in range(8)
)
"""Captions (attribute combinations) that no model sees during training."""
TRAIN_CAPTIONS: tuple[str, ...] = tuple(c for c in all_captions() if c not in HELD_OUT_CAPTIONS)
VAL_SEED = 10_000_000
"""First seed of validation scenes (disjoint from training seeds)."""
BENCH_SEED = 20_000_000
"""First seed of ShapesBench scenes (disjoint from training and validation)."""
TUNE_SEED = 30_000_000
"""First seed of the scenes on which edit settings are chosen (ShapesBench's ``--split tune``), so that
nothing is tuned on the scenes ShapesBench reports."""


@dataclass
class SceneBatch:
    """Rendered scenes as tensors: ``images`` (N, 3, 64, 64) uint8, ``masks`` (N, 64, 64) bool and label
    indices into ``all_captions()``, ``SHAPES``, ``OBJECT_COLORS`` and ``BACKGROUND_COLORS``."""

    images: torch.Tensor
    masks: torch.Tensor
    caption_idx: torch.Tensor
    shape_idx: torch.Tensor
    color_idx: torch.Tensor
    background_idx: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, n: int) -> SceneBatch:
        """The first ``n`` scenes."""
        return SceneBatch(
            *(
                t[:n]
                for t in (
                    self.images,
                    self.masks,
                    self.caption_idx,
                    self.shape_idx,
                    self.color_idx,
                    self.background_idx,
                )
            )
        )

    def as_float(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images in [-1, 1], float32."""
        images = self.images if index is None else self.images[index]
        return images.float() / 127.5 - 1.0


def render_batch(n: int, seed: int, flt: SceneFilter | None = None) -> SceneBatch:
    """Render ``n`` scenes with seeds ``seed .. seed + n - 1`` into a :class:`SceneBatch`."""
    caps = {c: i for i, c in enumerate(all_captions())}
    images, masks, cap, shp, col, bg = [], [], [], [], [], []
    for scene in iter_scenes(n, seed, flt):
        images.append(scene.image)
        masks.append(scene.mask)
        cap.append(caps[scene.caption])
        shp.append(SHAPES.index(scene.spec.obj.shape))
        col.append(_COLORS.index(scene.spec.obj.color))
        bg.append(_BGS.index(scene.spec.background))
    return SceneBatch(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        masks=torch.from_numpy(np.stack(masks)),
        caption_idx=torch.tensor(cap),
        shape_idx=torch.tensor(shp),
        color_idx=torch.tensor(col),
        background_idx=torch.tensor(bg),
    )


def train_split(n: int, seed_offset: int = 0) -> SceneBatch:
    """``n`` training scenes (held-out captions excluded)."""
    return render_batch(n, seed_offset, SceneFilter(captions=TRAIN_CAPTIONS))


def val_split(n: int, held_out: bool) -> SceneBatch:
    """``n`` validation scenes, either with held-out captions or with training captions (new seeds)."""
    captions = HELD_OUT_CAPTIONS if held_out else TRAIN_CAPTIONS
    return render_batch(n, VAL_SEED + (500_000 if held_out else 0), SceneFilter(captions=captions))
