"""The losses that steer a latent during the edit pass: pix2pix-zero's cross-attention L2 and the PatchNCE
term of pix2pix-zeroCon on decoder self-attention features.

The cross-attention L2 is accumulated by the attention processors (:mod:`zerocon.edit.attention`). The PatchNCE
term is :func:`zerocon.contrastive.patch_nce_feature_loss` (the project's one PatchNCE) applied to each
decoder ``attn1`` output of the guided pass (queries) against the same layer of the reference pass at the same
timestep (keys: positives at the same location, negatives at the other sampled locations), averaged over
layers. Its defaults follow CDS (Nam et al., CVPR 2024), the published training-free use of PatchNCE inside a
Stable Diffusion UNet: patch sizes 1 and 2, 256 patches, tau = 0.07. The pix2pix-zeroCon paper's own weight
and timestep range are not public; the defaults below are this project's choice and are configurable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from zerocon.contrastive import NCE_TEMPERATURE, NUM_PATCHES, patch_nce_feature_loss
from zerocon.edit.attention import tokens_to_map

GRADIENT_SCALES = ("absolute", "relative")
"""What :attr:`PatchNCEGuidance.weight` multiplies (see there)."""


@dataclass
class PatchNCEGuidance:
    """Settings of the patch-wise contrastive guidance of ``method="zerocon"``.

    Attributes:
        weight: multiplier of the PatchNCE term in the latent's gradient step (whose step size is
            ``cross_attention_guidance_amount``). 0 disables the term; ``None`` leaves it to the model (its
            ``edit_defaults``; 1 where it chooses nothing).
        scale: what ``weight`` multiplies. ``"absolute"``: the PatchNCE loss, added to the cross-attention loss
            (the gradient of the sum; how much that is depends on the model's feature sizes). ``"relative"``:
            the PatchNCE gradient rescaled to the norm of the cross-attention gradient at that step, so the
            weight is the contrastive push as a multiple of the cross-attention push on any model (costs a
            second backward pass through the guided forward).
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
    scale: str = "absolute"
    features: str = "decoder_self_attention"
    patch_sizes: tuple[int, ...] = (1, 2)
    num_patches: int = NUM_PATCHES
    temperature: float = NCE_TEMPERATURE
    t_min: int = 0
    t_max: int = 1000
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.scale not in GRADIENT_SCALES:
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


def patch_nce_guidance_loss(
    features: Mapping[str, torch.Tensor],
    reference_features: Mapping[str, torch.Tensor],
    latent_hw: tuple[int, int],
    config: PatchNCEGuidance,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean over layers of PatchNCE(edit features -> reference features) for (B, h*w, C) attention outputs."""
    if not features:
        raise ValueError("no decoder self-attention features were recorded (does the UNet have up_blocks?)")
    losses = []
    for name, query in features.items():
        key = reference_features[name]
        losses.append(
            patch_nce_feature_loss(
                tokens_to_map(query.float(), latent_hw),  # the loss in float32 whatever the UNet's dtype
                tokens_to_map(key.float(), latent_hw).detach(),
                num_patches=config.num_patches,
                patch_sizes=config.patch_sizes,
                temperature=config.temperature,
                generator=generator,
            )
        )
    return torch.stack(losses).mean()


def _live(loss: torch.Tensor | float | None) -> bool:
    return torch.is_tensor(loss) and loss.requires_grad


def guidance_gradient(
    xa_loss: torch.Tensor | float | None,
    nce_loss: torch.Tensor | None,
    latent: torch.Tensor,
    config: PatchNCEGuidance,
    stats: list[dict[str, float]] | None = None,
) -> torch.Tensor | None:
    """The gradient with respect to ``latent`` of the guidance: the cross-attention term plus the PatchNCE
    term weighted as ``config.scale`` says; ``None`` when neither term depends on ``latent``. ``stats``, when
    given, gets this step's norms of the two gradients (they are then differentiated separately)."""
    use_xa, use_nce = _live(xa_loss), _live(nce_loss)
    if not (use_xa or use_nce):
        return None
    weight = float(config.weight or 0.0)
    if not use_nce:
        return torch.autograd.grad(xa_loss, latent)[0]
    if config.scale == "absolute" and stats is None:
        total = xa_loss + weight * nce_loss if use_xa else weight * nce_loss
        return torch.autograd.grad(total, latent)[0]
    g_nce = torch.autograd.grad(nce_loss, latent, retain_graph=use_xa)[0]
    g_xa = torch.autograd.grad(xa_loss, latent)[0] if use_xa else torch.zeros_like(g_nce)
    xa_norm, nce_norm = float(g_xa.norm()), float(g_nce.norm())
    if stats is not None:
        stats.append({"xa_grad_norm": xa_norm, "nce_grad_norm": nce_norm})
    relative = config.scale == "relative" and xa_norm > 0 and nce_norm > 0
    return g_xa + weight * (xa_norm / nce_norm if relative else 1.0) * g_nce
