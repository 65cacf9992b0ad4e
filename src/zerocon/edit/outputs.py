"""What :class:`~zerocon.edit.pipeline.ZeroConPipeline` returns: the outputs of ``invert`` and ``__call__``
(diffusers' output types, same fields as its pix2pix-zero pipeline's plus the reference pass) and the results
of the photo recipe (:class:`Inversion`, :class:`EditResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.stable_diffusion.pipeline_output import StableDiffusionPipelineOutput
from diffusers.utils import BaseOutput


@dataclass
class ZeroConInversionOutput(BaseOutput):
    """Result of :meth:`ZeroConPipeline.invert` (same fields as diffusers' ``Pix2PixInversionPipelineOutput``).

    Attributes:
        latents: the inverted noise x_T, (B, 4, h, w).
        images: the decoded inverted latents (as diffusers does), or the latents for ``output_type="latent"``.
    """

    latents: torch.Tensor
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


@dataclass
class ZeroConPipelineOutput(StableDiffusionPipelineOutput):
    """``StableDiffusionPipelineOutput`` (``images``, ``nsfw_content_detected``) plus the reference pass.

    Attributes:
        reconstruction: the reference pass's result (the input rebuilt from its inversion), in the same
            ``output_type`` as ``images``; ``None`` when not requested.
        latents: the final latents of the edit.
        reference_latents: the final latents of the reference pass.
    """

    reconstruction: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None
    latents: torch.Tensor | None = None
    reference_latents: torch.Tensor | None = None


@dataclass
class Inversion:
    """A photo's inversion: x_T (1, c, h, w), the caption used as prompt and where it came from
    (:meth:`ZeroConPipeline.caption_source`), the input's size and timings."""

    latents: torch.Tensor
    caption: str
    input_size: tuple[int, int] = (0, 0)
    timings: dict[str, float] = field(default_factory=dict)
    caption_source: str = "given"


@dataclass
class EditResult:
    """What :meth:`ZeroConPipeline.edit` returns.

    Attributes:
        edit: the edited image (input aspect ratio).
        reconstruction: the input rebuilt from its inversion without the edit (same size).
        caption: the caption used as the inversion / reference prompt.
        edited_caption: the caption after the word swap (or the target sentence).
        direction: the edit direction used.
        timings: seconds per stage (caption, inversion, direction, edit).
        inverted_latents: x_T.
        caption_source: ``"given"``, ``"captioner"`` or ``"template"``.
        scheduler: the sampler used and the checkpoint's (:func:`~zerocon.edit.schedulers.describe_scheduler`).
    """

    edit: PIL.Image.Image
    reconstruction: PIL.Image.Image
    caption: str
    edited_caption: str
    direction: Any
    timings: dict[str, float]
    inverted_latents: torch.Tensor
    caption_source: str = "given"
    scheduler: dict[str, Any] = field(default_factory=dict)
