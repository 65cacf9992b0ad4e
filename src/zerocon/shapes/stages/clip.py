"""The ShapesWorld CLIP (transformers ``CLIPModel``): contrastive training on (scene, caption) pairs and its
zero-shot attribute accuracy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zerocon.shapes.data import TRAIN_CAPTIONS, SceneBatch
from zerocon.shapes.stage import Stage, TowerConfig, render_splits, save_atomic, train_stage
from zerocon.shapes.world import BACKGROUND_COLORS, OBJECT_COLORS, SHAPES, all_captions, parse_caption

CLIP_MEAN = [0.5, 0.5, 0.5]
CLIP_STD = [0.5, 0.5, 0.5]


@dataclass
class ClipConfig(TowerConfig):
    """The text and image encoders: a text tower and a ViT vision tower trained contrastively."""

    projection_dim: int = 64
    """Size of the shared image-text embedding."""
    batch_size: int = 64
    init_from: str = ""
    """Continue from this CLIP folder instead of a fresh model (tokenizer taken from there too)."""
    new_vision: bool = False
    """With ``init_from``: keep its text tower and projection but build a fresh vision tower from this
    config's ``hidden`` / ``layers`` / ``heads`` / ``patch`` (e.g. finer patches)."""
    freeze_text: bool = False
    """Train only the vision tower, its projection and the temperature: the text encoder's hidden states
    (the UNet's conditioning) stay exactly as they were."""


def build_clip(cfg: ClipConfig, tokenizer: Any) -> Any:
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        **cfg.text_tower(),
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = cfg.vision_tower()
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim))


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output from ``get_*_features``; older versions a tensor."""
    return output if torch.is_tensor(output) else output.pooler_output


def tokenize(tokenizer: Any, captions: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Token ids padded to the tokenizer's full length, as diffusers pipelines encode prompts."""
    return tokenizer(
        list(captions), padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids


@torch.no_grad()
def clip_zero_shot(model: Any, tokenizer: Any, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Zero-shot attributes of ``images`` ((N,3,64,64) in [-1,1]): the attributes of the best-matching
    caption among all captions of the world. Returns index tensors for shape, colour, background."""
    captions = all_captions()
    text = F.normalize(_features(model.get_text_features(input_ids=tokenize(tokenizer, captions))), dim=-1)
    img = F.normalize(_features(model.get_image_features(pixel_values=images)), dim=-1)
    best = (img @ text.T).argmax(-1)
    parsed = [parse_caption(captions[i]) for i in best.tolist()]
    colors, bgs = list(OBJECT_COLORS), list(BACKGROUND_COLORS)
    return {
        "shape": torch.tensor([SHAPES.index(p["shape"]) for p in parsed]),
        "color": torch.tensor([colors.index(p["color"]) for p in parsed]),
        "background": torch.tensor([bgs.index(p["background"]) for p in parsed]),
    }


def clip_accuracy(model: Any, tokenizer: Any, batch: SceneBatch) -> dict[str, float]:
    """Zero-shot shape, colour and background accuracy on ``batch``."""
    model.eval()
    pred = clip_zero_shot(model, tokenizer, batch.as_float())
    model.train()
    return {
        "shape_acc": (pred["shape"] == batch.shape_idx).float().mean().item(),
        "color_acc": (pred["color"] == batch.color_idx).float().mean().item(),
        "background_acc": (pred["background"] == batch.background_idx).float().mean().item(),
    }


def save_clip(out: Path, model: Any, tokenizer: Any) -> None:
    """The model with a ``CLIPProcessor`` for 64x64 scenes in [-1, 1], written atomically to ``out``."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        processor = CLIPProcessor(
            image_processor=CLIPImageProcessor(
                size={"shortest_edge": 64},
                crop_size={"height": 64, "width": 64},
                image_mean=CLIP_MEAN,
                image_std=CLIP_STD,
            ),
            tokenizer=tokenizer,
        )
        processor.save_pretrained(folder)

    save_atomic(out, save)


def _load_clip(run: Path, cfg: ClipConfig) -> tuple[Any, Any]:
    """The tokenizer and the model to train: fresh, continued from ``init_from``, or with a new vision tower."""
    from zerocon.shapes.tokenizers import build_clip_tokenizer

    if not cfg.init_from:
        tokenizer = build_clip_tokenizer(run / "clip_tokenizer_src")
        return tokenizer, build_clip(cfg, tokenizer)
    from transformers import CLIPModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(cfg.init_from)
    model = CLIPModel.from_pretrained(cfg.init_from)
    if cfg.new_vision:
        fresh = build_clip(cfg, tokenizer)
        fresh.text_model.load_state_dict(model.text_model.state_dict())
        fresh.text_projection.load_state_dict(model.text_projection.state_dict())
        model = fresh
    return tokenizer, model


class ClipStage(Stage):
    """Contrastive (scene, caption) training: image->caption over all training captions, caption->image
    over the batch with every image of that caption a positive (captions repeat within a batch)."""

    name = "clip"
    weight_decay = 0.01
    max_grad_norm = None
    eval_at_last_step = True

    def __init__(self, run: Path, cfg: ClipConfig, gen: torch.Generator) -> None:
        super().__init__(run, cfg, gen)
        self.out = run / ("clip_vision" if cfg.freeze_text else "clip")
        self.tokenizer, self.model = _load_clip(run, cfg)
        if cfg.freeze_text:
            self.model.text_model.requires_grad_(False)
            self.model.text_projection.requires_grad_(False)
        self.data, self.val_seen, self.val_unseen = render_splits(cfg)
        all_caps = all_captions()
        train_caps = list(TRAIN_CAPTIONS)
        # a scene's caption index into all captions -> its class among the training captions
        self.cap_to_train = torch.full((len(all_caps),), -1, dtype=torch.long)
        for j, c in enumerate(train_caps):
            self.cap_to_train[all_caps.index(c)] = j
        self.ids = tokenize(self.tokenizer, train_caps)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        model = self.model
        target = self.cap_to_train[self.data.caption_idx[idx]]
        img = F.normalize(_features(model.get_image_features(pixel_values=self.data.as_float(idx))), dim=-1)
        txt = F.normalize(_features(model.get_text_features(input_ids=self.ids)), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        logits = scale * img @ txt.T  # (B, C)
        loss_i2t = F.cross_entropy(logits, target)
        present = target.unique()
        t2i = logits[:, present].T  # (P, B)
        positive = target[None, :] == present[:, None]
        loss_t2i = (t2i.logsumexp(-1) - t2i.masked_fill(~positive, -1e9).logsumexp(-1)).mean()
        return 0.5 * (loss_i2t + loss_t2i)

    def evaluate(self) -> dict[str, Any]:
        seen = clip_accuracy(self.model, self.tokenizer, self.val_seen)
        unseen = clip_accuracy(self.model, self.tokenizer, self.val_unseen)
        return {**{f"seen_{k}": v for k, v in seen.items()}, **{f"heldout_{k}": v for k, v in unseen.items()}}

    def save(self) -> None:
        save_clip(self.out / "model", self.model, self.tokenizer)

    def final_metrics(self) -> dict[str, Any]:
        return {
            "val_seen_captions": clip_accuracy(self.model, self.tokenizer, self.val_seen),
            "val_heldout_captions": clip_accuracy(self.model, self.tokenizer, self.val_unseen),
        }

    def final_row(self, metrics: dict[str, Any]) -> None:
        """None: CLIP's curve ends with its evaluation rows (one at the last step)."""
        return None


def train_clip(run_dir: str | os.PathLike, cfg: ClipConfig) -> dict:
    """Train the CLIP into ``RUN/clip`` (``RUN/clip_vision`` with ``freeze_text``)."""
    return train_stage(ClipStage, run_dir, cfg)
