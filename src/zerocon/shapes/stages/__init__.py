"""The ShapesWorld training stages, one module each, and :func:`run_stage` that runs one by name.

Each stage trains one model of the same architecture as the real one (transformers ``CLIPModel`` /
``BlipForConditionalGeneration``, diffusers ``AutoencoderKL`` / ``UNet2DConditionModel``) at a size that fits
a shared 2-core CPU, under the loop of :mod:`zerocon.shapes.stage`; it writes ``RUN/<stage>/model``
(``save_pretrained``), ``curve.jsonl`` and ``metrics.json``.

Order: ``clip`` and ``vae`` first; ``unet`` needs both (frozen text encoder and VAE encoder);
``vae_decoder`` then fine-tunes only the VAE decoder (the latent space the UNet learned stays fixed);
``blip`` is independent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from zerocon.errors import ZeroconError
from zerocon.shapes.stage import StageConfig
from zerocon.shapes.stages.blip import BlipConfig, train_blip
from zerocon.shapes.stages.clip import ClipConfig, train_clip
from zerocon.shapes.stages.unet import UnetConfig, train_unet
from zerocon.shapes.stages.vae import VaeConfig, train_vae
from zerocon.shapes.stages.vae_decoder import VaeDecoderConfig, train_vae_decoder

STAGES = ("clip", "vae", "unet", "vae_decoder", "blip")

CONFIGS: dict[str, type[StageConfig]] = {
    "clip": ClipConfig,
    "vae": VaeConfig,
    "unet": UnetConfig,
    "vae_decoder": VaeDecoderConfig,
    "blip": BlipConfig,
}

TRAINERS: dict[str, Callable[[Any, Any], dict]] = {
    "clip": train_clip,
    "vae": train_vae,
    "unet": train_unet,
    "vae_decoder": train_vae_decoder,
    "blip": train_blip,
}


def run_stage(stage: str, run_dir: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict:
    """Train ``stage`` with its config defaults updated by ``overrides``; returns the metrics record."""
    if stage not in TRAINERS:
        raise ZeroconError(f"unknown stage '{stage}'; known: {', '.join(STAGES)}")
    cls = CONFIGS[stage]
    known = {f for f in cls.__dataclass_fields__}
    bad = [k for k in (overrides or {}) if k not in known]
    if bad:
        raise ZeroconError(f"stage '{stage}' has no setting '{bad[0]}'; settings: {', '.join(sorted(known))}")
    cfg = cls(**(overrides or {}))
    return TRAINERS[stage](run_dir, cfg)
