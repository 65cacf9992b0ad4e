"""Tiny random Stable Diffusion (+ BLIP) components built in code, for offline tests and the benchmark.

Everything is created from configs with fixed seeds; the tokenizers are built from vocabularies written to
disk here, so nothing is downloaded. ``save_tiny_pipeline`` writes a folder with ``save_pretrained`` that
``ZeroConPipeline.from_pretrained`` loads back — the same code path as a hub model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from zerocon.shapes.tokenizers import build_clip_tokenizer, byte_alphabet

WORDS = (
    "a photo of the cat dog sitting on grass red blue ball small large picture photography with in and an "
    "garden street room bed camera portrait tiger zebra horse"
).split()


def write_clip_tokenizer(folder: Path, model_max_length: int = 77) -> CLIPTokenizer:
    """A CLIPTokenizer over every byte character, with one token for each of :data:`WORDS`."""
    return build_clip_tokenizer(folder, model_max_length, words=WORDS, alphabet=byte_alphabet())


def tiny_unet(seed: int = 0, cross_attention_dim: int = 32, **config: Any) -> UNet2DConditionModel:
    """A 16x16-latent UNet; ``config`` overrides its settings (e.g. an SD 2.x layout's)."""
    torch.manual_seed(seed)
    settings = {
        "block_out_channels": (32, 64),
        "layers_per_block": 2,
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }
    return UNet2DConditionModel(**{**settings, **config})


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=32,
    )


def tiny_text_encoder(seed: int = 0, vocab_size: int = 1000, hidden: int = 32) -> CLIPTextModel:
    torch.manual_seed(seed)
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=hidden,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=vocab_size,
        )
    )


def tiny_scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type=prediction_type,
    )


def tiny_blip(folder: Path, seed: int = 0):
    """A tiny BlipForConditionalGeneration and a BlipProcessor with a word-level BERT vocabulary."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    torch.manual_seed(seed)
    text = BlipTextConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=tokens.index("[DEC]"),
        eos_token_id=tokens.index("[SEP]"),
        sep_token_id=tokens.index("[SEP]"),
        pad_token_id=0,
    )
    vision = BlipVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    )
    model.eval()
    return model, processor


def tiny_components(
    folder: Path, seed: int = 0, prediction_type: str = "epsilon", with_blip: bool = False
) -> dict:
    """The components of a tiny pipeline (64x64 images, 4x16x16 latents... scale factor 2 -> 32x32)."""
    components = {
        "vae": tiny_vae(seed),
        "text_encoder": tiny_text_encoder(seed),
        "tokenizer": write_clip_tokenizer(folder / "clip_tokenizer"),
        "unet": tiny_unet(seed),
        "scheduler": tiny_scheduler(prediction_type),
    }
    if with_blip:
        model, processor = tiny_blip(folder / "blip", seed)
        components["caption_generator"] = model
        components["caption_processor"] = processor
    for value in components.values():
        if isinstance(value, torch.nn.Module):
            value.eval()
    return components


def save_tiny_pipeline(
    folder: Path, seed: int = 0, prediction_type: str = "epsilon", with_blip: bool = False
) -> Path:
    """Write a tiny ZeroConPipeline with ``save_pretrained`` to ``folder / "pipeline"``."""
    from zerocon.edit.pipeline import ZeroConPipeline

    pipe = ZeroConPipeline(**tiny_components(folder / "parts", seed, prediction_type, with_blip))
    out = folder / "pipeline"
    pipe.save_pretrained(out)
    return out
