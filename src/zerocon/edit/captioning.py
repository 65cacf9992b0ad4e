"""BLIP captions of input photos (the caption is the inversion prompt and the source of automatic edit
directions).

diffusers' pix2pix-zero recipe prompts BLIP with the text prefix ``"a photography of"`` and keeps the prefix
in the caption; :func:`blip_caption` does the same by default so captions match the peer pipeline.
"""

from __future__ import annotations

from typing import Any

import torch

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-base"
"""The captioner of diffusers' pix2pix-zero recipe, used when the diffusion model brings none (Stable
Diffusion repos hold no captioner)."""


def load_captioner(name_or_path: str, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """A ``BlipForConditionalGeneration`` and its ``BlipProcessor`` from a hub id (in the local cache when
    offline) or a folder, in ``dtype``. One that cannot be found is a one-line
    :class:`~zerocon.errors.ZeroconError` naming ``--captioner`` and the way out, and so is a checkpoint that
    leaves weights missing or unused (see :mod:`zerocon.pretrained`): never a partly random captioner."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from zerocon.models import missing_weights_error, resolve_model
    from zerocon.pretrained import from_pretrained_strict

    location = resolve_model(name_or_path, option="--captioner")
    try:
        processor = BlipProcessor.from_pretrained(location)
        model = from_pretrained_strict(
            BlipForConditionalGeneration, location, f"--captioner {name_or_path} (BLIP)", dtype=dtype
        )
    except (OSError, ValueError) as exc:
        raise missing_weights_error(name_or_path, exc, option="--captioner") from exc
    model.requires_grad_(False)
    return model.eval(), processor


@torch.no_grad()
def blip_caption(
    model: Any,
    processor: Any,
    images: Any,
    device: torch.device | str | None = None,
    prefix: str = "a photography of",
    max_new_tokens: int = 128,
) -> str:
    """Caption the first of ``images`` with a ``BlipForConditionalGeneration`` and its ``BlipProcessor``.

    Decoding is greedy (deterministic). The model is moved to ``device`` for the call and back afterwards.
    """
    previous = model.device
    device = torch.device(device) if device is not None else previous
    inputs = processor(images, prefix or None, return_tensors="pt").to(device=device, dtype=model.dtype)
    model.to(device)
    try:
        outputs = model.generate(**inputs, max_new_tokens=max_new_tokens)
    finally:
        model.to(previous)
    return processor.batch_decode(outputs, skip_special_tokens=True)[0].strip()
