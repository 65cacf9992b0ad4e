"""pix2pix-zero's noise regularisation for DDIM inversion.

At every inversion step the predicted noise is pushed towards i.i.d. standard normal noise by a few gradient
steps on two losses (Parmar et al., SIGGRAPH 2023; official code ``src/utils/ddim_inv.py``):

* **auto-correlation**: for each image and latent channel, over a pyramid of the noise map (average-pooled by
  2 until its height is at most 8), the squared mean of ``n * roll(n, d)`` along the height and along the
  width, with one random offset ``d`` per level;
* **KL**: ``var + mean^2 - 1 - log(var + 1e-7)`` of the whole noise tensor.

The official code fixed in Sept 2024 a bug where the offset could be 0 ("the random roll would sometimes not
get applied"); diffusers' deprecated pipeline still draws ``d`` in ``[0, H/2)``. Here ``d`` is drawn in
``[1, H/2)`` unless ``allow_zero_roll=True`` (diffusers' behaviour, used to check parity with it).

The offsets are drawn from the caller's generator in the same order as diffusers (image, channel, level), and
the loss is evaluated for all images and channels at once (per-channel rolls by ``gather``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def pyramid_heights(height: int) -> list[int]:
    """Heights of the auto-correlation pyramid levels for a noise map of ``height`` rows."""
    heights = [height]
    while heights[-1] > 8:
        heights.append(heights[-1] // 2)
    return heights


def draw_roll_offsets(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None = None,
    allow_zero_roll: bool = False,
) -> torch.Tensor:
    """Offsets (B, C, levels) for :func:`auto_corr_loss`, drawn one at a time in diffusers' order."""
    batch, channels, height = shape[0], shape[1], shape[2]
    heights = pyramid_heights(height)
    offsets = torch.empty(batch, channels, len(heights), dtype=torch.long)
    for i in range(batch):
        for j in range(channels):
            for level, h in enumerate(heights):
                if allow_zero_roll:
                    value = torch.randint(max(h // 2, 1), (1,), generator=generator)
                else:
                    value = torch.randint(1, max(h // 2, 2), (1,), generator=generator)
                offsets[i, j, level] = value.item()
    return offsets


def _roll_each(x: torch.Tensor, offsets: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.roll(x[b, c], offsets[b, c], dim)`` for every (b, c) of a (B, C, H, W) tensor."""
    size = x.shape[dim]
    position = torch.arange(size, device=x.device)
    index = (position.view(1, 1, size) - offsets.to(x.device).view(*offsets.shape, 1)) % size  # (B, C, size)
    if dim == 2:
        index = index.unsqueeze(-1).expand_as(x)
    else:
        index = index.unsqueeze(-2).expand_as(x)
    return torch.gather(x, dim, index)


def auto_corr_loss(noise: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sum over images, channels and pyramid levels of the squared auto-correlations at ``offsets``."""
    loss = noise.new_zeros(())
    level_map = noise
    for level in range(offsets.shape[-1]):
        shift = offsets[..., level]
        along_h = (level_map * _roll_each(level_map, shift, 2)).mean(dim=(2, 3))
        along_w = (level_map * _roll_each(level_map, shift, 3)).mean(dim=(2, 3))
        loss = loss + (along_h**2).sum() + (along_w**2).sum()
        if level + 1 < offsets.shape[-1]:
            level_map = F.avg_pool2d(level_map, kernel_size=2)
    return loss


def kl_divergence(noise: torch.Tensor) -> torch.Tensor:
    """KL-style penalty of the whole tensor's mean and (unbiased) variance against N(0, 1)."""
    mean = noise.mean()
    var = noise.var()
    return var + mean**2 - 1 - torch.log(var + 1e-7)


def regularize_noise(
    model_output: torch.Tensor,
    to_epsilon: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator | None = None,
    lambda_auto_corr: float = 20.0,
    lambda_kl: float = 20.0,
    num_reg_steps: int = 5,
    num_auto_corr_rolls: int = 5,
    allow_zero_roll: bool = False,
) -> torch.Tensor:
    """Gradient steps on the UNet output so that the noise it implies looks i.i.d. N(0, 1).

    ``to_epsilon`` maps the model output to the predicted noise (identity for epsilon prediction; linear for
    v- and sample prediction), so the losses are always measured on the noise and the update is applied to
    the model output, as in diffusers.
    """
    output = model_output.detach()
    with torch.enable_grad():
        for _ in range(num_reg_steps):
            if lambda_auto_corr > 0:
                for _ in range(num_auto_corr_rolls):
                    var = output.detach().clone().requires_grad_(True)
                    offsets = draw_roll_offsets(var.shape, generator, allow_zero_roll)
                    loss = auto_corr_loss(to_epsilon(var), offsets)
                    (grad,) = torch.autograd.grad(loss, var)
                    output = output - lambda_auto_corr * (grad / num_auto_corr_rolls)
            if lambda_kl > 0:
                var = output.detach().clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(kl_divergence(to_epsilon(var)), var)
                output = output - lambda_kl * grad
            output = output.detach()
    return output
