"""CLIP accuracy and CLIP score of edits (pix2pix-zero Table 1; torchmetrics' CLIPScore).

* **CLIP accuracy** — the share of edited images whose CLIP cosine similarity to the *target* text is higher
  than to the *source* text (pix2pix-zero: "percentage of edited images whose CLIP similarity to the target
  text exceeds that to the source text").
* **CLIP score** — ``max(100 · cos(image, text), 0)`` per image, averaged; the definition of torchmetrics'
  ``CLIPScore`` (Hessel et al.), used by PIE-Bench.

The network is a transformers ``CLIPModel`` + processor loaded from a hub id or a local folder (``--clip``);
the pure functions take embeddings so that tests can check them on hand-made vectors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from zerocon.metrics.common import batches, load_pretrained

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
"""The CLIP used for CLIP score by torchmetrics and PIE-Bench (the pix2pix-zero paper does not name its)."""
DEFAULT_TEMPLATE = "a photo of a {}"
"""How a bare word (``--source cat``) becomes the text CLIP compares with; ``{}`` is the word."""


def clip_accuracy_per_image(
    image_embeds: torch.Tensor, source_embed: torch.Tensor, target_embed: torch.Tensor
) -> torch.Tensor:
    """Bool (N,): whether each image is closer (cosine) to the target text than to the source text.

    ``image_embeds`` is (N, D); ``source_embed`` / ``target_embed`` are (D,) or (N, D) (one text per image).
    A tie counts as a failure: the edit did not move the image towards the target.
    """
    image = F.normalize(image_embeds.float(), dim=-1)
    to_target = (image * F.normalize(target_embed.float(), dim=-1)).sum(-1)
    to_source = (image * F.normalize(source_embed.float(), dim=-1)).sum(-1)
    return to_target > to_source


def clip_accuracy(
    image_embeds: torch.Tensor, source_embed: torch.Tensor, target_embed: torch.Tensor
) -> float:
    """The share (0..1) of images whose CLIP similarity to the target text beats that to the source text."""
    if image_embeds.shape[0] == 0:
        raise ValueError("CLIP accuracy of zero images is undefined")
    return clip_accuracy_per_image(image_embeds, source_embed, target_embed).float().mean().item()


def clip_score_per_image(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """(N,) ``max(100 · cos(image_i, text_i), 0)``; ``text_embeds`` is (D,) or (N, D)."""
    cos = (F.normalize(image_embeds.float(), dim=-1) * F.normalize(text_embeds.float(), dim=-1)).sum(-1)
    return (100.0 * cos).clamp(min=0.0)


def clip_score(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> float:
    """Mean CLIP score (torchmetrics' definition) of images against their texts."""
    if image_embeds.shape[0] == 0:
        raise ValueError("CLIP score of zero images is undefined")
    return clip_score_per_image(image_embeds, text_embeds).mean().item()


def _features(output: Any) -> torch.Tensor:
    # transformers < 5 returns the projected tensor, 5.x an output object whose pooler_output is projected
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass
class ClipEmbedder:
    """A CLIP model and its processor: turns images and texts into (unnormalised) joint embeddings."""

    model: Any
    processor: Any
    batch_size: int = 16

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None, option: str = "--clip", device: str = "cpu"
    ) -> ClipEmbedder:
        """Load a ``CLIPModel`` and processor (``AutoProcessor``) from a hub id or a local folder."""

        def load(resolved: str) -> ClipEmbedder:
            from transformers import AutoProcessor, CLIPModel

            from zerocon.pretrained import from_pretrained_strict

            model = from_pretrained_strict(CLIPModel, resolved, f"{option} {name_or_path} (CLIP)")
            model = model.to(device).eval()
            return cls(model=model, processor=AutoProcessor.from_pretrained(resolved))

        return load_pretrained(option, name_or_path, "CLIP", load)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, D) image embeddings; images are preprocessed by the model's own processor."""
        out = []
        for chunk in batches(list(images), self.batch_size):
            pixels = self.processor(images=list(chunk), return_tensors="pt")["pixel_values"]
            out.append(_features(self.model.get_image_features(pixel_values=pixels.to(self.device))).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(T, D) text embeddings."""
        tokens = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _features(self.model.get_text_features(**tokens)).cpu()


def edit_texts(source: str, target: str, template: str = DEFAULT_TEMPLATE) -> tuple[str, str]:
    """The source and target texts CLIP compares an edit with (``template`` holds ``{}`` for the word)."""
    if "{}" not in template:
        raise ValueError(f"the prompt template must contain '{{}}' for the word, got {template!r}")
    return template.format(source), template.format(target)
