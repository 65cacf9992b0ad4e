"""Tiny random models saved under real hub repo ids, in those repos' layouts, in a Hugging Face cache folder.

What a user of Stable Diffusion has on disk after ``huggingface-cli download``: ``CompVis/stable-diffusion-v1-4``
(a ``StableDiffusionPipeline`` index with ``safety_checker`` and ``feature_extractor``, the repo's
``PNDMScheduler`` config), ``stabilityai/stable-diffusion-2-1`` (v-prediction DDIM, linear projections,
upcast attention, no safety checker) and ``Salesforce/blip-image-captioning-base`` (a BLIP captioner repo).
Only the sizes are tiny; the scheduler and index files are the repos' own contents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tiny import tiny_blip, tiny_text_encoder, tiny_unet, tiny_vae, write_clip_tokenizer

SD14 = "CompVis/stable-diffusion-v1-4"
SD21 = "stabilityai/stable-diffusion-2-1"
BLIP = "Salesforce/blip-image-captioning-base"

SD14_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.7.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
"""``CompVis/stable-diffusion-v1-4/scheduler/scheduler_config.json``."""

SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
"""``stabilityai/stable-diffusion-2-1/scheduler/scheduler_config.json``."""

_COMPONENTS = {
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SD14_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.2.2",
    **_COMPONENTS,
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
}
"""``CompVis/stable-diffusion-v1-4/model_index.json``."""
SD21_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.10.0.dev0",
    **_COMPONENTS,
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDIMScheduler"],
}
"""``stabilityai/stable-diffusion-2-1/model_index.json``."""


def snapshot_folder(
    hub_cache: Path, repo_id: str, commit: str = "0123456789abcdef0123456789abcdef01234567"
) -> Path:
    """The snapshot folder of ``repo_id`` in a hub cache, with ``refs/main`` pointing at it."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    folder = repo / "snapshots" / commit
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _unet(sd2: bool, seed: int = 0) -> UNet2DConditionModel:
    """SD 1.x / 2.x block order; 2.x: per-block heads, linear projections, upcast attention."""
    return tiny_unet(
        seed,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2,
        upcast_attention=sd2,
    )


def _safety_checker(seed: int = 0):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    return StableDiffusionSafetyChecker(config).eval(), CLIPImageProcessor(size=32, crop_size=32)


def save_sd_repo(hub_cache: Path, repo_id: str, work: Path, seed: int = 0) -> Path:
    """A tiny Stable Diffusion repo under ``repo_id`` (1.x layout for SD14, 2.x for SD21)."""
    sd2 = repo_id == SD21
    safety_checker, feature_extractor = _safety_checker(seed) if not sd2 else (None, None)
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(seed),
        tokenizer=write_clip_tokenizer(work / f"tokenizer-{seed}"),
        unet=_unet(sd2, seed),
        scheduler=DDIMScheduler.from_config({**SD14_SCHEDULER, "_class_name": "DDIMScheduler"}),
        safety_checker=safety_checker,
        feature_extractor=feature_extractor,
        requires_safety_checker=not sd2,
    )
    folder = snapshot_folder(hub_cache, repo_id)
    pipe.save_pretrained(folder)
    config = SD21_SCHEDULER if sd2 else SD14_SCHEDULER
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))
    (folder / "model_index.json").write_text(json.dumps(SD21_INDEX if sd2 else SD14_INDEX, indent=2))
    if sd2:
        from transformers import CLIPImageProcessor

        CLIPImageProcessor(size=32, crop_size=32).save_pretrained(folder / "feature_extractor")
    return folder


def save_blip_repo(hub_cache: Path, work: Path, seed: int = 0) -> Path:
    folder = snapshot_folder(hub_cache, BLIP)
    model, processor = tiny_blip(work / "blip-vocab", seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def ddim_copy(snapshot: Path, out: Path) -> Path:
    """The same weights as a local folder whose scheduler is the DDIM a user would build by hand."""
    pipe = StableDiffusionPipeline.from_pretrained(
        snapshot, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False
    )
    pipe.save_pretrained(out)
    return out


def offline_env(hf_home: Path) -> dict[str, str]:
    """The environment of a user whose machine has these repos in its cache and no network."""
    return {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
