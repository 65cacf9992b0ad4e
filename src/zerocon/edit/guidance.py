"""The losses that steer a latent during the edit pass: pix2pix-zero's cross-attention L2 and the PatchNCE
term of pix2pix-zeroCon on decoder self-attention features.

The cross-attention L2 is accumulated by the attention processors (:mod:`zerocon.edit.attention`). The PatchNCE
term is :func:`zerocon.contrastive.patch_nce_feature_loss` (the project's one PatchNCE) applied to each
decoder ``attn1`` output of the guided pass (queries) against the same layer of the reference pass at the same
timestep (keys: positives at the same location, negatives at the other sampled locations), averaged over
layers. Its defaults follow CDS (Nam et al., CVPR 2024), the published training-free use of PatchNCE inside a
Stable Diffusion UNet: patch sizes 1 and 2, 256 patches, tau = 0.07. The pix2pix-zeroCon paper's own weight
and timestep range are not public; the defaults (:class:`~zerocon.edit.config.PatchNCEGuidance`, defined with
the other settings in :mod:`zerocon.edit.config` and imported here) are this project's choice and configurable.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from zerocon.contrastive import patch_nce_feature_loss
from zerocon.edit.attention import tokens_to_map
from zerocon.edit.config import GRADIENT_SCALES, PatchNCEGuidance

__all__ = ["GRADIENT_SCALES", "PatchNCEGuidance", "guidance_gradient", "patch_nce_guidance_loss"]


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
