"""Training of the ShapesWorld models (CLIP, AutoencoderKL, text-conditioned UNet, BLIP captioner), under
the names other code imports from here.

The code lives in :mod:`zerocon.shapes.stage` (the one training loop and the shared settings) and
:mod:`zerocon.shapes.stages` (one module per stage, and :func:`run_stage`); the command line is
:mod:`zerocon.shapes.train_cli` and the curve figure :mod:`zerocon.shapes.curves`.
"""

from __future__ import annotations

from zerocon.shapes.stage import StageConfig
from zerocon.shapes.stages import CONFIGS, STAGES, TRAINERS, run_stage
from zerocon.shapes.stages.blip import (
    BlipConfig,
    blip_captions,
    blip_exact_match,
    blip_vision_state_from_clip,
    build_blip,
    build_blip_processor,
    train_blip,
)
from zerocon.shapes.stages.clip import (
    CLIP_MEAN,
    CLIP_STD,
    ClipConfig,
    build_clip,
    clip_accuracy,
    clip_zero_shot,
    save_clip,
    tokenize,
    train_clip,
)
from zerocon.shapes.stages.unet import (
    UnetConfig,
    _eval_captions,
    build_unet,
    encode_text,
    final_unet_metrics,
    generate,
    load_text_encoder,
    oracle_agreement,
    sd_scheduler_config,
    train_unet,
)
from zerocon.shapes.stages.vae import VaeConfig, build_vae, latent_std, psnr, train_vae, vae_factor, vae_psnr
from zerocon.shapes.stages.vae_decoder import VaeDecoderConfig, train_vae_decoder

__all__ = [
    "BlipConfig",
    "CLIP_MEAN",
    "CLIP_STD",
    "CONFIGS",
    "ClipConfig",
    "STAGES",
    "StageConfig",
    "TRAINERS",
    "UnetConfig",
    "VaeConfig",
    "VaeDecoderConfig",
    "_eval_captions",
    "blip_captions",
    "blip_exact_match",
    "blip_vision_state_from_clip",
    "build_blip",
    "build_blip_processor",
    "build_clip",
    "build_unet",
    "build_vae",
    "clip_accuracy",
    "clip_zero_shot",
    "encode_text",
    "final_unet_metrics",
    "generate",
    "latent_std",
    "load_text_encoder",
    "oracle_agreement",
    "psnr",
    "run_stage",
    "save_clip",
    "sd_scheduler_config",
    "tokenize",
    "train_blip",
    "train_clip",
    "train_unet",
    "train_vae",
    "train_vae_decoder",
    "vae_factor",
    "vae_psnr",
]
