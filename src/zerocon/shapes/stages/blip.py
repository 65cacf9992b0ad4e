"""The ShapesWorld captioner (transformers ``BlipForConditionalGeneration``): teacher-forced captioning and its
exact-match accuracy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zerocon.errors import ZeroconError
from zerocon.shapes.data import SceneBatch
from zerocon.shapes.stage import Stage, TowerConfig, render_splits, save_atomic, train_stage
from zerocon.shapes.stages.clip import CLIP_MEAN, CLIP_STD
from zerocon.shapes.world import all_captions


@dataclass
class BlipConfig(TowerConfig):
    """The captioner: a ViT vision tower and a text decoder that cross-attends to it."""

    init_vision_from: str = ""
    """A CLIP folder whose vision tower starts BLIP's (as BLIP starts from a pre-trained ViT); its hidden
    size, patch and layer count must match ``hidden``, ``patch`` and the vision layers."""
    init_from: str = ""
    """Continue from this BlipForConditionalGeneration folder (its own architecture; ``init_vision_from``
    and the size settings are then ignored)."""


def build_blip(cfg: BlipConfig, tokenizer: Any) -> Any:
    from transformers import BlipConfig as HFBlipConfig
    from transformers import BlipForConditionalGeneration

    text = dict(
        **cfg.text_tower(),
        vocab_size=len(tokenizer),
        encoder_hidden_size=cfg.hidden,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        label_smoothing=0.0,
    )
    vision = dict(
        **cfg.vision_tower(),
        # a tower started from CLIP keeps CLIP's activation
        hidden_act="quick_gelu" if cfg.init_vision_from else "gelu",
    )
    return BlipForConditionalGeneration(
        HFBlipConfig(text_config=text, vision_config=vision, projection_dim=cfg.hidden)
    )


def blip_vision_state_from_clip(clip_vision: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``BlipVisionModel`` state dict from a ``CLIPVisionTransformer`` one of the same size.

    Same computation except two details fine-tuning absorbs: BLIP has no pre-layernorm (CLIP's is dropped)
    and its patch embedding has a bias (zero here). Q, K and V stack into BLIP's fused ``qkv`` projection.
    """
    out: dict[str, torch.Tensor] = {
        "embeddings.class_embedding": clip_vision["embeddings.class_embedding"].reshape(1, 1, -1),
        "embeddings.position_embedding": clip_vision["embeddings.position_embedding.weight"][None],
        "embeddings.patch_embedding.weight": clip_vision["embeddings.patch_embedding.weight"],
        "post_layernorm.weight": clip_vision["post_layernorm.weight"],
        "post_layernorm.bias": clip_vision["post_layernorm.bias"],
    }
    out["embeddings.patch_embedding.bias"] = torch.zeros(out["embeddings.patch_embedding.weight"].shape[0])
    layers = sorted({int(k.split(".")[2]) for k in clip_vision if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"self_attn.qkv.{kind}"] = torch.cat(
                [clip_vision[src + f"self_attn.{n}_proj.{kind}"] for n in ("q", "k", "v")]
            )
            out[dst + f"self_attn.projection.{kind}"] = clip_vision[src + f"self_attn.out_proj.{kind}"]
            for name in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"):
                out[dst + f"{name}.{kind}"] = clip_vision[src + f"{name}.{kind}"]
    return out


def build_blip_processor(tokenizer: Any) -> Any:
    """A ``BlipProcessor`` for 64x64 scenes in [-1, 1] (CLIP's normalisation)."""
    from transformers import BlipImageProcessor, BlipProcessor

    image_processor = BlipImageProcessor(
        size={"height": 64, "width": 64}, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True
    )
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


@torch.no_grad()
def blip_captions(model: Any, tokenizer: Any, images: torch.Tensor) -> list[str]:
    """Greedy captions of (N,3,64,64) images in [-1, 1]."""
    model.eval()
    ids = model.generate(pixel_values=images, max_new_tokens=12, do_sample=False, num_beams=1)
    model.train()
    return [" ".join(tokenizer.decode(row, skip_special_tokens=True).split()) for row in ids]


def blip_exact_match(model: Any, tokenizer: Any, batch: SceneBatch) -> float:
    """Fraction of ``batch`` whose greedy caption is exactly the scene's caption."""
    caps = all_captions()
    pred = blip_captions(model, tokenizer, batch.as_float())
    return sum(p == caps[i] for p, i in zip(pred, batch.caption_idx.tolist())) / len(batch)


def _load_blip(run: Path, cfg: BlipConfig) -> tuple[Any, Any]:
    """The tokenizer and the model to train: fresh (its vision tower maybe from a CLIP) or from ``init_from``."""
    from zerocon.shapes.tokenizers import build_bert_tokenizer

    if cfg.init_from:
        from transformers import BertTokenizer, BlipForConditionalGeneration

        return BertTokenizer.from_pretrained(cfg.init_from), BlipForConditionalGeneration.from_pretrained(
            cfg.init_from
        )
    tokenizer = build_bert_tokenizer(run / "blip_tokenizer_src")
    model = build_blip(cfg, tokenizer)
    if cfg.init_vision_from:
        from transformers import CLIPModel

        clip_vision = CLIPModel.from_pretrained(cfg.init_vision_from).vision_model.state_dict()
        try:
            model.vision_model.load_state_dict(blip_vision_state_from_clip(clip_vision))
        except RuntimeError as exc:
            raise ZeroconError(
                f"{cfg.init_vision_from}: its vision tower does not fit this BLIP config ({exc})"
            ) from None
    return tokenizer, model


class BlipStage(Stage):
    """Teacher-forced captioning loss on (scene, caption)."""

    name = "blip"
    weight_decay = 0.01

    def __init__(self, run: Path, cfg: BlipConfig, gen: torch.Generator) -> None:
        super().__init__(run, cfg, gen)
        self.tokenizer, self.model = _load_blip(run, cfg)
        self.processor = build_blip_processor(self.tokenizer)
        self.data, self.val_seen, self.val_unseen = render_splits(cfg)
        enc = self.tokenizer(
            all_captions(),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        self.cap_ids, self.cap_mask = enc.input_ids, enc.attention_mask

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        caption = self.data.caption_idx[idx]
        ids, mask = self.cap_ids[caption], self.cap_mask[caption]
        labels = ids.masked_fill(mask == 0, -100)  # no loss on padding
        images = self.data.as_float(idx)
        return self.model(pixel_values=images, input_ids=ids, attention_mask=mask, labels=labels).loss

    def evaluate(self) -> dict[str, Any]:
        return {
            "exact_seen": blip_exact_match(self.model, self.tokenizer, self.val_seen),
            "exact_heldout": blip_exact_match(self.model, self.tokenizer, self.val_unseen),
        }

    def save(self) -> None:
        def write(folder: Path) -> None:
            self.model.save_pretrained(folder)
            self.processor.save_pretrained(folder)

        save_atomic(self.out / "model", write)

    def final_metrics(self) -> dict[str, Any]:
        return {
            "exact_match_val_seen": blip_exact_match(self.model, self.tokenizer, self.val_seen),
            "exact_match_val_heldout": blip_exact_match(self.model, self.tokenizer, self.val_unseen),
        }


def train_blip(run_dir: str | os.PathLike, cfg: BlipConfig) -> dict:
    """Train the captioner into ``RUN/blip``."""
    return train_stage(BlipStage, run_dir, cfg)
