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

Both losses are means, so a fixed step is far larger on a small latent than on Stable Diffusion's 64 x 64 one,
and the auto-correlation loss is quartic: on an 8 x 8 latent with a strongly correlated noise prediction a
plain gradient step overshoots, the next is larger, and the noise reaches Inf within a few steps. So each step
is safeguarded: a step that would raise its own loss is halved until it does not (at most
:data:`MAX_HALVINGS` times; then it is skipped). Where every step descends, as on every parity fixture, the
result is diffusers' exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

MAX_HALVINGS = 30
"""How many times a regularisation step that raises its loss is halved before it is skipped."""


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


def auto_corr_grad(noise: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`auto_corr_loss` with respect to ``noise``, in closed form.

    At a level with map n of N = h*w pixels, d(mean(n * roll(n, d))^2)/dn = 2 a / N (roll(n, d) + roll(n, -d));
    average pooling by 2 sends a gradient back as a quarter to each of its four inputs (odd edges get none).
    """
    levels = [noise]
    for _ in range(offsets.shape[-1] - 1):
        levels.append(F.avg_pool2d(levels[-1], kernel_size=2))
    grad = None
    for level in reversed(range(offsets.shape[-1])):
        n = levels[level]
        shift = offsets[..., level]
        count = n.shape[-1] * n.shape[-2]
        level_grad = torch.zeros_like(n)
        for dim in (2, 3):
            forward = _roll_each(n, shift, dim)
            backward = _roll_each(n, -shift, dim)
            corr = (n * forward).mean(dim=(2, 3), keepdim=True)
            level_grad = level_grad + (2.0 / count) * corr * (forward + backward)
        if grad is not None:
            up = grad.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) / 4
            up = F.pad(up, (0, n.shape[-1] - up.shape[-1], 0, n.shape[-2] - up.shape[-2]))
            level_grad = level_grad + up
        grad = level_grad
    return grad


def kl_grad(noise: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`kl_divergence` with respect to ``noise``, in closed form."""
    count = noise.numel()
    mean = noise.mean()
    var = noise.var()
    return (2.0 / (count - 1)) * (noise - mean) * (1 - 1 / (var + 1e-7)) + 2 * mean / count


def epsilon_coefficients(prediction_type: str, alpha_prod: torch.Tensor | float) -> tuple[float, float]:
    """(a, b) with epsilon = a * model_output + b * sample for a scheduler's prediction type."""
    alpha = float(alpha_prod)
    if prediction_type == "epsilon":
        return 1.0, 0.0
    if prediction_type == "v_prediction":
        return alpha**0.5, (1 - alpha) ** 0.5
    if prediction_type == "sample":
        return -(alpha**0.5) / (1 - alpha) ** 0.5, 1 / (1 - alpha) ** 0.5
    raise ValueError(f"prediction_type {prediction_type!r} must be epsilon, sample or v_prediction")


def regularize_noise(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    prediction_type: str,
    alpha_prod: torch.Tensor | float,
    generator: torch.Generator | None = None,
    lambda_auto_corr: float = 20.0,
    lambda_kl: float = 20.0,
    num_reg_steps: int = 5,
    num_auto_corr_rolls: int = 5,
    allow_zero_roll: bool = False,
) -> torch.Tensor:
    """Gradient steps on the UNet output so that the noise it implies looks i.i.d. N(0, 1).

    The noise is ``epsilon = a * output + b * sample`` (:func:`epsilon_coefficients`), so the losses are always
    measured on the noise and the update ``-lambda * a * dL/depsilon`` is applied to the model output, as in
    diffusers (which differentiates through its ``get_epsilon``). Gradients are in closed form.
    """
    a, b = epsilon_coefficients(prediction_type, alpha_prod)

    def to_epsilon(out: torch.Tensor) -> torch.Tensor:
        return out if b == 0.0 and a == 1.0 else a * out + b * sample

    output = model_output.detach()
    for _ in range(num_reg_steps):
        if lambda_auto_corr > 0:
            for _ in range(num_auto_corr_rolls):
                offsets = draw_roll_offsets(output.shape, generator, allow_zero_roll)
                output = descend(
                    output,
                    to_epsilon,
                    partial(auto_corr_loss, offsets=offsets),
                    partial(auto_corr_grad, offsets=offsets),
                    lambda_auto_corr * a / num_auto_corr_rolls,
                )
        if lambda_kl > 0:
            output = descend(output, to_epsilon, kl_divergence, kl_grad, lambda_kl * a)
    return output


def descend(
    output: torch.Tensor,
    to_epsilon: Callable[[torch.Tensor], torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor],
    grad: Callable[[torch.Tensor], torch.Tensor],
    step: float,
) -> torch.Tensor:
    """``output - step * grad(epsilon)``, the step halved while it raises ``loss(epsilon)`` (at most
    :data:`MAX_HALVINGS` times, then ``output`` unchanged); ``epsilon = to_epsilon(output)``."""
    epsilon = to_epsilon(output)
    before = loss(epsilon)
    update = step * grad(epsilon)
    for _ in range(MAX_HALVINGS + 1):
        candidate = output - update
        if loss(to_epsilon(candidate)) <= before:
            return candidate
        update = update / 2
    return output
