"""The editor's settings, each defined once: the methods, the defaults a model may choose, the PatchNCE
settings and :class:`EditConfig`.

This module imports neither torch nor diffusers, so the command line, the web app and the bench can read the
settings (and validate a request) without loading the networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from zerocon.errors import ZeroconError

if TYPE_CHECKING:
    import torch

METHODS = ("zerocon", "pix2pix_zero", "word_swap")
"""Edit methods, the default first: + PatchNCE guidance; cross-attention guidance; embeddings only."""

CROSS_ATTENTION_GUIDANCE_AMOUNT = 0.1
"""Default step size of the latent's guidance step (pix2pix-zero for real images; ~0.01 suits v-prediction /
SD 2.x models)."""

EDIT_DEFAULTS: dict[str, Any] = {
    "guidance_scale": 5.0,
    "use_templates": True,
    "patch_nce_weight": 1.0,
    "patch_nce_scale": "relative",
}
"""The :class:`EditConfig` settings a model may choose for itself (``edit_defaults`` in its model_index.json)
and their values when it does not: pix2pix-zero's guidance and templates for real photos with Stable
Diffusion, and PatchNCE weight 1 on the relative scale, chosen on ShapesBench's tune split
(``benchmarks/shapes_nce_weight.py``); ``patch_nce_weight`` / ``patch_nce_scale`` fill
``EditConfig.patch_nce.weight`` / ``.scale``. A model whose ``edit_defaults`` set ``patch_nce_weight`` without
``patch_nce_scale`` keeps the meaning its weight had when it was written: ``"absolute"``."""

GRADIENT_SCALES = ("absolute", "relative")
"""What :attr:`PatchNCEGuidance.weight` multiplies (see there)."""

NUM_PATCHES = 256
"""PatchNCE locations sampled per layer and patch size (CUT and CDS); :mod:`zerocon.contrastive` uses it too."""
NCE_TEMPERATURE = 0.07
"""PatchNCE temperature tau (CUT and CDS)."""


def check_method(method: str) -> None:
    """Raise :class:`ZeroconError` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise ZeroconError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")


def _model_choices(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`EDIT_DEFAULTS` overridden by the model's own ``edit_defaults``."""
    own = dict(model_config.get("edit_defaults") or {})
    if "patch_nce_weight" in own and "patch_nce_scale" not in own:
        own["patch_nce_scale"] = "absolute"  # the only scale there was when such a weight was chosen
    return {**EDIT_DEFAULTS, **own}


def patch_nce_for_model(
    patch_nce: PatchNCEGuidance | None, model_config: Mapping[str, Any]
) -> PatchNCEGuidance:
    """``patch_nce`` (default settings when ``None``) with the weight and scale it leaves to the model."""
    patch_nce = patch_nce or PatchNCEGuidance()
    chosen = _model_choices(model_config)
    if patch_nce.weight is None:
        patch_nce = replace(patch_nce, weight=float(chosen["patch_nce_weight"]))
    if patch_nce.scale is None:
        patch_nce = replace(patch_nce, scale=str(chosen["patch_nce_scale"]))
    return patch_nce


@dataclass
class PatchNCEGuidance:
    """Settings of the patch-wise contrastive guidance of ``method="zerocon"``.

    Attributes:
        weight: multiplier of the PatchNCE term in the latent's gradient step (whose step size is
            ``cross_attention_guidance_amount``). 0 disables the term; ``None`` leaves it to the model (its
            ``edit_defaults``; :data:`EDIT_DEFAULTS` where it chooses nothing).
        scale: what ``weight`` multiplies. ``"relative"``: the PatchNCE gradient rescaled to the norm of the
            cross-attention gradient at that step, so the weight is the contrastive push as a multiple of the
            cross-attention push on any model (costs a second backward pass through the guided forward).
            ``"absolute"``: the PatchNCE loss, added to the cross-attention loss (the gradient of the sum; how
            much that is depends on the model's feature sizes: the same weight pushes 3,000 times harder on
            one model than on another). ``None`` leaves it to the model.
        features: which UNet features; only ``"decoder_self_attention"`` (outputs of ``attn1`` in the
            ``up_blocks``, as CDS) is implemented.
        patch_sizes: average-pooling sizes of the feature maps before sampling (1 = raw locations).
        num_patches: locations sampled per layer and patch size.
        temperature: PatchNCE temperature tau.
        t_min, t_max: the term is applied only at timesteps ``t_min <= t <= t_max`` (scheduler units,
            0..num_train_timesteps); the default covers the whole trajectory like the cross-attention term.
        seed: seed of the generator that samples patch locations; ``None`` draws it from the pipeline's
            generator (so the same ``generator`` seed gives the same edit).
    """

    weight: float | None = None
    scale: str | None = None
    features: str = "decoder_self_attention"
    patch_sizes: tuple[int, ...] = (1, 2)
    num_patches: int = NUM_PATCHES
    temperature: float = NCE_TEMPERATURE
    t_min: int = 0
    t_max: int = 1000
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.scale is not None and self.scale not in GRADIENT_SCALES:
            raise ValueError(
                f"unknown PatchNCE scale {self.scale!r}; use one of {', '.join(GRADIENT_SCALES)}"
            )
        if self.features != "decoder_self_attention":
            raise ValueError(f"unknown PatchNCE features {self.features!r}; use 'decoder_self_attention'")
        if (
            (self.weight is not None and self.weight < 0)
            or self.num_patches < 1
            or self.temperature <= 0
            or not self.patch_sizes
        ):
            raise ValueError(
                "PatchNCE guidance needs weight >= 0, num_patches >= 1, temperature > 0, patch sizes"
            )
        if self.t_min > self.t_max:
            raise ValueError(f"PatchNCE timestep range is empty: t_min={self.t_min} > t_max={self.t_max}")
        self.patch_sizes = tuple(int(p) for p in self.patch_sizes)

    def active(self, timestep: int | float | torch.Tensor) -> bool:
        t = float(timestep)
        return bool(self.weight) and self.t_min <= t <= self.t_max


@dataclass
class EditConfig:
    """Settings of :meth:`ZeroConPipeline.edit`; defaults are pix2pix-zero's for real images.

    Attributes:
        method: ``"zerocon"`` (default), ``"pix2pix_zero"`` or ``"word_swap"``.
        num_inference_steps: DDIM steps of the inversion and of the edit (pix2pix-zero: 50).
        guidance_scale: classifier-free guidance with the caption as negative prompt (``None``: the model's
            choice, see :data:`EDIT_DEFAULTS`; pix2pix-zero's 5 for Stable Diffusion).
        cross_attention_guidance_amount: step size of the latent's guidance step (pix2pix-zero real: 0.1;
            use ~0.01 for v-prediction / SD 2.x models).
        patch_nce: PatchNCE settings of ``"zerocon"``.
        lambda_auto_corr, lambda_kl, num_reg_steps, num_auto_corr_rolls: inversion regularisation
            (pix2pix-zero: 20, 20, 5, 5).
        allow_zero_roll: diffusers' auto-correlation offsets in [0, H/2) instead of [1, H/2).
        use_templates: add template sentence banks to word-swap directions (``None``: the model's choice;
            yes for Stable Diffusion).
        caption_prefix, caption_max_new_tokens: BLIP prompt prefix (``None``: the pipeline's own
            ``caption_prefix``) and length.
        template_caption: without a captioner, caption the input ``"a photo of a <source>"`` (the CLI's
            ``--captioner none``); off, a missing captioner is an error.
        seed: seed of the inversion's and the edit's generators (same seed, same image).
    """

    method: str = METHODS[0]
    num_inference_steps: int = 50
    guidance_scale: float | None = None
    cross_attention_guidance_amount: float = CROSS_ATTENTION_GUIDANCE_AMOUNT
    patch_nce: PatchNCEGuidance = field(default_factory=PatchNCEGuidance)
    lambda_auto_corr: float = 20.0
    lambda_kl: float = 20.0
    num_reg_steps: int = 5
    num_auto_corr_rolls: int = 5
    allow_zero_roll: bool = False
    use_templates: bool | None = None
    caption_prefix: str | None = None
    caption_max_new_tokens: int = 40
    template_caption: bool = False
    seed: int = 0

    def for_model(self, model_config: Mapping[str, Any]) -> EditConfig:
        """This config with the settings it leaves to the model (``None``) filled from the model's
        ``edit_defaults`` (``pipe.config``, or a model_index.json read with ``load_config``), else from
        :data:`EDIT_DEFAULTS`."""
        chosen = _model_choices(model_config)
        own = {k: v for k, v in chosen.items() if not k.startswith("patch_nce_") and getattr(self, k) is None}
        return replace(self, patch_nce=patch_nce_for_model(self.patch_nce, model_config), **own)

    def inversion_key(self) -> dict[str, Any]:
        """The settings an inversion depends on (for caching)."""
        return {
            "num_inference_steps": self.num_inference_steps,
            "lambda_auto_corr": self.lambda_auto_corr,
            "lambda_kl": self.lambda_kl,
            "num_reg_steps": self.num_reg_steps,
            "num_auto_corr_rolls": self.num_auto_corr_rolls,
            "allow_zero_roll": self.allow_zero_roll,
            "caption_prefix": self.caption_prefix,
            "caption_max_new_tokens": self.caption_max_new_tokens,
            "template_caption": self.template_caption,
            "seed": self.seed,
        }
