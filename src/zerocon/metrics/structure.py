"""Structure distance (Tumanyan et al., Splice, CVPR 2022; used by Plug-and-Play, pix2pix-zero, PIE-Bench).

For each image, take the **keys of the last transformer layer** of a self-supervised DINO ViT, build the
cosine self-similarity matrix of all tokens (CLS included), and report the mean squared difference between
the input's and the edit's matrices. The matrices describe *layout* (which parts of the image resemble which)
and not appearance, so a cat turned into a dog in the same pose scores low, a shuffled image high.
Lower is better. Splice uses DINO ViT-B/8 (``facebook/dino-vitb8`` on the hub), images resized to 224 and
ImageNet-normalised.

The keys are read with a forward hook on the last layer's key projection of a transformers ViT-family model
(``key`` / ``k_proj``; a fused ``qkv`` projection is sliced), so no model code is patched.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zerocon.metrics.common import imagenet_normalize, load_pretrained, resize_batch

DEFAULT_DINO = "facebook/dino-vitb8"
"""Splice's default network (DINO ViT-B/8) as a transformers hub id."""


def self_similarity(keys: torch.Tensor) -> torch.Tensor:
    """(N, T, T) cosine similarity between all tokens' keys; ``keys`` is (N, T, D)."""
    unit = F.normalize(keys.float(), dim=-1)
    return unit @ unit.transpose(1, 2)


def structure_distance_from_keys(keys_a: torch.Tensor, keys_b: torch.Tensor) -> torch.Tensor:
    """(N,) mean squared difference between the two images' key self-similarity matrices."""
    if keys_a.shape != keys_b.shape:
        raise ValueError(f"key shapes differ: {tuple(keys_a.shape)} vs {tuple(keys_b.shape)}")
    return (self_similarity(keys_a) - self_similarity(keys_b)).pow(2).mean(dim=(1, 2))


def find_last_key_projection(model: nn.Module) -> tuple[str, nn.Linear, bool]:
    """The last layer's key projection: (name, module, fused) where ``fused`` means a q|k|v Linear."""
    found: tuple[str, nn.Linear, bool] | None = None
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Linear) and leaf in ("key", "k_proj"):
            found = (name, module, False)
        elif isinstance(module, nn.Linear) and leaf == "qkv":
            found = (name, module, True)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no attention key projection ('key', 'k_proj' or 'qkv')")
    return found


@dataclass
class DinoKeyExtractor:
    """A ViT whose last-layer keys are captured by a forward hook; ``keys(images)`` returns (N, T, D)."""

    model: Any
    image_size: int = 224
    patch_size: int = 8

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None, option: str = "--dino", device: str = "cpu"
    ) -> DinoKeyExtractor:
        """Load a transformers ViT-family ``AutoModel`` (e.g. ``facebook/dino-vitb8``) from a hub id or folder."""

        def load(resolved: str) -> DinoKeyExtractor:
            from transformers import AutoModel

            from zerocon.pretrained import from_pretrained_strict

            # DINO checkpoints hold no pooler (ViTModel adds one); the keys are read before it, so it may stay
            # random: every other weight must come from the checkpoint
            model = from_pretrained_strict(
                AutoModel, resolved, f"{option} {name_or_path} (DINO ViT)", allow_missing=("pooler.",)
            )
            model = model.to(device).eval()
            find_last_key_projection(model)  # fail now, with the option named, if it is not a ViT
            config = model.config
            return cls(model=model, image_size=int(config.image_size), patch_size=int(config.patch_size))

        return load_pretrained(option, name_or_path, "DINO ViT (structure distance)", load)

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        # Splice resizes the shorter side to 224 and keeps the aspect ratio; sides snap to the patch grid
        h, w = images.shape[-2:]
        scale = self.image_size / min(h, w)
        size = (
            max(self.patch_size, round(h * scale / self.patch_size) * self.patch_size),
            max(self.patch_size, round(w * scale / self.patch_size) * self.patch_size),
        )
        return resize_batch(images, size)

    @torch.no_grad()
    def keys(self, images: torch.Tensor) -> torch.Tensor:
        """(N, T, D) last-layer keys (CLS + patch tokens) for (N, 3, H, W) images in [-1, 1]."""
        name, projection, fused = find_last_key_projection(self.model)
        captured: list[torch.Tensor] = []
        handle = projection.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            pixels = imagenet_normalize(self._resize(images.float())).to(next(self.model.parameters()).device)
            kwargs = {}
            if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
                if "interpolate_pos_encoding" in inspect.signature(self.model.forward).parameters:
                    kwargs["interpolate_pos_encoding"] = True
            self.model(pixel_values=pixels, **kwargs)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"the hook on {name} saw no forward pass")
        keys = captured[-1].cpu()
        if fused:
            width = keys.shape[-1] // 3
            keys = keys[..., width : 2 * width]
        return keys


def structure_distance(
    extractor: DinoKeyExtractor, inputs: torch.Tensor, outputs: torch.Tensor
) -> torch.Tensor:
    """(N,) structure distance between each input and its edit (both (N, 3, H, W) in [-1, 1])."""
    return structure_distance_from_keys(extractor.keys(inputs), extractor.keys(outputs))
