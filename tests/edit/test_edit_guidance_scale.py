"""What the PatchNCE weight multiplies: the loss ("absolute") or the gradient at the cross-attention
gradient's norm ("relative")."""

import pytest
import torch

from zerocon.edit.guidance import PatchNCEGuidance, guidance_gradient


def _losses():
    x = torch.tensor([1.0, 2.0, -1.0], requires_grad=True)
    xa = (x**2).sum()  # gradient 2x: norm 2 * sqrt(6)
    nce = 1000.0 * x[0]  # gradient (1000, 0, 0): a term a thousand times larger, as on a big UNet
    return x, xa, nce


def test_absolute_scale_is_the_gradient_of_the_weighted_sum():
    x, xa, nce = _losses()
    grad = guidance_gradient(xa, nce, x, PatchNCEGuidance(weight=0.5))
    assert torch.allclose(grad, 2 * x.detach() + 0.5 * torch.tensor([1000.0, 0, 0]))


def test_relative_scale_sizes_the_contrastive_push_by_the_cross_attention_push():
    x, xa, nce = _losses()
    stats = []
    grad = guidance_gradient(xa, nce, x, PatchNCEGuidance(weight=0.5, scale="relative"), stats)
    g_xa = 2 * x.detach()
    contrastive = grad - g_xa
    assert contrastive.norm().item() == pytest.approx(0.5 * g_xa.norm().item(), rel=1e-6)
    assert contrastive[1:].abs().max() == 0 and contrastive[0] > 0  # the direction is PatchNCE's
    assert stats == [pytest.approx({"xa_grad_norm": g_xa.norm().item(), "nce_grad_norm": 1000.0})]


def test_no_live_term_gives_no_gradient_and_bad_scale_is_refused():
    x = torch.zeros(3, requires_grad=True)
    assert guidance_gradient(0.0, None, x, PatchNCEGuidance(weight=1.0)) is None
    with pytest.raises(ValueError, match="unknown PatchNCE scale"):
        PatchNCEGuidance(scale="per-feature")
