"""LANIT's losses: the StarGAN v2 terms with multi-hot labels, and the domain-regularisation loss.

Weights and their defaults live in :class:`zerocon.lanit.model.LanitConfig`; these are the pure functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def adversarial_loss(logits: torch.Tensor, labels: torch.Tensor, target: float) -> torch.Tensor:
    """Non-saturating BCE-with-logits on the discriminator outputs of the active domains.

    ``logits`` and ``labels`` are (B, N); every active (image, domain) pair is one term, averaged over all
    active pairs (an image with more domains on contributes more terms, as in LANIT). Zero if none is on.
    """
    weights = labels.to(logits.dtype)
    terms = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")
    return (terms * weights).sum() / weights.sum().clamp_min(1.0)


def r1_penalty(logits: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1: 0.5 * E‖∇_x D(x)‖² on real images, for the logits of their active domains (needs real.requires_grad)."""
    selected = (logits * labels.to(logits.dtype)).sum()
    (grad,) = torch.autograd.grad(selected, real, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(dim=1).mean()


def style_reconstruction_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the style encoded from the translated image and the style used to make it."""
    return (predicted - target).abs().mean()


def diversity_loss(fake_a: torch.Tensor, fake_b: torch.Tensor) -> torch.Tensor:
    """L1 between two translations with different styles; subtracted from the generator loss."""
    return (fake_a - fake_b).abs().mean()


def diversity_weight(step: int, lambda_ds: float, ds_iter: int) -> float:
    """The diversity weight decays linearly from ``lambda_ds`` at step 0 to 0 at ``ds_iter``."""
    if ds_iter <= 0:
        return 0.0
    return lambda_ds * max(0.0, 1.0 - step / ds_iter)


def cycle_loss(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between the image translated back with its own style and the original."""
    return (reconstructed - real).abs().mean()


def flip_one_active(labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn off one randomly chosen active domain per row.

    Returns the flipped labels d_inv and the index k of the domain turned off (-1 for a row with none on,
    which is left unchanged). This is the label the domain-regularisation loss translates with a second time.
    """
    on = labels > 0.5
    scores = torch.rand(labels.shape, generator=generator).to(labels.device)
    scores = scores.masked_fill(~on, -1.0)
    k = scores.argmax(dim=1)
    k = torch.where(on.any(dim=1), k, torch.full_like(k, -1))
    flipped = labels.clone()
    rows = torch.nonzero(k >= 0).flatten()
    flipped[rows, k[rows]] = 0.0
    return flipped, k


def domain_probability(
    image_features: torch.Tensor,
    domain_features: torch.Tensor,
    base_feature: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Soft adaptive threshold: P(domain n on | x) = sigmoid(scale * (cos(x, t_n) - cos(x, t_base))), (B, N).

    Its 0.5 level is exactly the hard pseudo-label rule; ``scale`` is CLIP's logit scale.
    """
    sim = image_features @ domain_features.T
    base = image_features @ base_feature
    return torch.sigmoid(scale * (sim - base[:, None]))


def domain_regularization_loss(
    prob_translated: torch.Tensor,
    prob_ablated: torch.Tensor,
    k: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """L_dl: the flipped domain k should be on in ŷ = G(x, s(d)) and off in ŷ' = G(ŷ, s(d_inv)).

    ``prob_*`` are (B, N) domain probabilities of the two translations; ``k`` (B,) the flipped domain per row
    (-1 rows are ignored). Loss = mean over rows of -log p_k(ŷ) - log(1 - p_k(ŷ')). Zero if no row counts.
    """
    rows = torch.nonzero(k >= 0).flatten()
    if rows.numel() == 0:
        return prob_translated.sum() * 0.0
    p_on = prob_translated[rows, k[rows]]
    p_off = prob_ablated[rows, k[rows]]
    return (-(p_on + eps).log() - (1.0 - p_off + eps).log()).mean()
