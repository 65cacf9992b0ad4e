"""The inversion's noise regularisation: closed-form gradients, roll offsets, effect on the noise."""

from __future__ import annotations

import pytest
import torch

from zerocon.edit.inversion import (
    auto_corr_grad,
    auto_corr_loss,
    draw_roll_offsets,
    kl_divergence,
    kl_grad,
    pyramid_heights,
    regularize_noise,
)


@pytest.mark.parametrize("shape", [(1, 4, 16, 16), (2, 4, 32, 32), (1, 4, 13, 21)])
def test_closed_form_gradients_match_autograd(shape):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    offsets = draw_roll_offsets(shape, torch.Generator().manual_seed(1))
    (g_ac,) = torch.autograd.grad(auto_corr_loss(x, offsets), x)
    (g_kl,) = torch.autograd.grad(kl_divergence(x), x)
    assert torch.allclose(auto_corr_grad(x.detach(), offsets), g_ac, atol=1e-15, rtol=1e-10)
    assert torch.allclose(kl_grad(x.detach()), g_kl, atol=1e-15, rtol=1e-10)


def test_auto_corr_loss_matches_torch_roll_per_channel():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    offsets = draw_roll_offsets(x.shape, torch.Generator().manual_seed(2))
    expected = 0.0
    for i in range(2):
        for j in range(3):
            n = x[i : i + 1, j : j + 1]
            for level in range(offsets.shape[-1]):
                d = int(offsets[i, j, level])
                expected += (n * torch.roll(n, d, 2)).mean() ** 2 + (n * torch.roll(n, d, 3)).mean() ** 2
                n = torch.nn.functional.avg_pool2d(n, 2)
    assert auto_corr_loss(x, offsets).item() == pytest.approx(float(expected), rel=1e-5)


def test_roll_offsets_never_zero_unless_asked():
    assert pyramid_heights(64) == [64, 32, 16, 8]
    offsets = draw_roll_offsets((4, 4, 16, 16), torch.Generator().manual_seed(0))
    assert offsets.min() >= 1 and offsets[..., 0].max() < 8 and offsets[..., 1].max() < 4
    zeros = draw_roll_offsets((8, 4, 16, 16), torch.Generator().manual_seed(0), allow_zero_roll=True)
    assert zeros.min() == 0


def test_regularisation_makes_correlated_noise_whiter():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 4, 34, 34, generator=g), 3, stride=1) * 4.5
    offsets = draw_roll_offsets(smooth.shape, torch.Generator().manual_seed(5))
    before = auto_corr_loss(smooth, offsets).item()
    after_out = regularize_noise(smooth, smooth, "epsilon", 0.5, generator=torch.Generator().manual_seed(1))
    assert auto_corr_loss(after_out, offsets).item() < before
    assert abs(after_out.var().item() - 1) < abs(smooth.var().item() - 1)


def test_regularisation_of_a_small_correlated_latent_stays_finite_and_descends():
    """On an 8 x 8 latent a plain step of lambda 20 overshoots the quartic auto-correlation loss and the noise
    reaches Inf (here a nearly flat prediction, as from a flat gray input); the safeguarded step never raises a
    loss."""
    smooth = 2.0 + 0.3 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    plain = smooth.clone()
    rolls = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(5):
            for _ in range(5):
                offsets = draw_roll_offsets(plain.shape, rolls)
                plain = plain - 20.0 * auto_corr_grad(plain, offsets) / 5
            plain = plain - 20.0 * kl_grad(plain)
    assert not torch.isfinite(plain).all(), "the fixture must make the unguarded iteration diverge"

    regularised = regularize_noise(smooth, smooth, "epsilon", 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(regularised).all()
    assert kl_divergence(regularised) < kl_divergence(smooth)
    offsets = draw_roll_offsets(smooth.shape, torch.Generator().manual_seed(5))
    assert auto_corr_loss(regularised, offsets) < auto_corr_loss(smooth, offsets)
