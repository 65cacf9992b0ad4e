"""Sliced Wasserstein distance (SWD) between two point sets and between two sets of images.

For point sets X and Y in R^D, SWD_p is the p-Wasserstein distance between their 1-D projections on random
unit directions theta, averaged over directions:  ( mean_theta W_p(X.theta, Y.theta)^p )^(1/p).  Each 1-D
distance is computed exactly from the two empirical quantile functions, so the sets may differ in size.

For images (as in Karras et al., ICLR 2018, "Progressive Growing of GANs"), the points are random 7x7 patches
of every level of a Laplacian pyramid; patch descriptors are standardised per channel with the statistics of
the *reference* set (so colour and contrast shifts count), and the distance is reported per level and as the
mean over levels. Lower is better; identical sets give 0. Only torch is needed; every random draw uses the
generator passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image


def random_directions(dim: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` random unit vectors in R^dim (uniform on the sphere), shape (count, dim)."""
    directions = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return directions / directions.norm(dim=1, keepdim=True)


def wasserstein_1d(x: torch.Tensor, y: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Exact W_p^p between empirical distributions along the last axis of ``x`` (..., N) and ``y`` (..., M)."""
    n, m = x.shape[-1], y.shape[-1]
    xs, _ = torch.sort(x.double(), dim=-1)
    ys, _ = torch.sort(y.double(), dim=-1)
    # the quantile functions are step functions with breaks at i/n and j/m; integrate piecewise
    breaks = torch.cat(
        [torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m]
    )
    breaks = torch.unique(torch.cat([torch.zeros(1, dtype=torch.float64), breaks]))
    widths = breaks[1:] - breaks[:-1]
    mids = (breaks[1:] + breaks[:-1]) / 2
    ix = torch.clamp(torch.ceil(mids * n).long() - 1, 0, n - 1)
    iy = torch.clamp(torch.ceil(mids * m).long() - 1, 0, m - 1)
    diff = (xs[..., ix] - ys[..., iy]).abs().pow(p)
    return (diff * widths).sum(dim=-1)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    num_projections: int = 128,
    p: float = 1.0,
    generator: torch.Generator | None = None,
    directions: torch.Tensor | None = None,
) -> float:
    """SWD_p between point sets ``x`` (N, D) and ``y`` (M, D) over ``num_projections`` random directions.

    ``directions`` (K, D) replaces the random ones (e.g. to compare against another implementation).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) point sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    if directions is None:
        directions = random_directions(x.shape[1], num_projections, generator)
    directions = directions.double()
    px = directions @ x.double().T  # (K, N)
    py = directions @ y.double().T  # (K, M)
    return float(wasserstein_1d(px, py, p).mean().pow(1.0 / p))


def _as_batch(images: Sequence[Image.Image] | torch.Tensor) -> list[torch.Tensor]:
    """PIL images or a (B, 3, H, W) tensor in [-1, 1] -> list of (3, H, W) float tensors in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        return [im.float() for im in images]
    from zerocon.images import pil_to_tensor

    return [pil_to_tensor(im) for im in images]


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype)
    kernel = (kernel[:, None] * kernel[None, :]) / 256.0
    kernel = kernel[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels of a (3, H, W) image, finest first; the last level is the low-pass residual."""
    current = image[None]
    bands = []
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 16:
            break
        down = _blur(current)[:, :, ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        bands.append((current - up)[0])
        current = down
    bands.append(current[0])
    return bands


def _random_patches(
    image: torch.Tensor, size: int, count: int, generator: torch.Generator | None
) -> torch.Tensor:
    _, height, width = image.shape
    if height < size or width < size:
        return image.new_zeros((0, image.shape[0] * size * size))
    top = torch.randint(0, height - size + 1, (count,), generator=generator)
    left = torch.randint(0, width - size + 1, (count,), generator=generator)
    rows = top[:, None] + torch.arange(size)[None]  # (count, size)
    cols = left[:, None] + torch.arange(size)[None]
    patches = image[:, rows[:, :, None], cols[:, None, :]]  # (C, count, size, size)
    return patches.permute(1, 0, 2, 3).reshape(count, -1)


def image_swd(
    images: Sequence[Image.Image] | torch.Tensor,
    reference: Sequence[Image.Image] | torch.Tensor,
    levels: int = 3,
    patch_size: int = 7,
    patches_per_image: int = 128,
    num_projections: int = 128,
    generator: torch.Generator | None = None,
) -> dict[str, float | list[float]]:
    """Patch SWD between two image sets (PIL images or (B, 3, H, W) tensors in [-1, 1]), lower is better.

    Returns ``{"swd": mean over levels, "levels": [finest, ..., coarsest]}`` (not scaled by 1000 as in
    Karras et al.). Images of any size are allowed (a level too small for a patch contributes nothing).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    # both sets draw patch positions from the same stream (common random numbers): identical sets give exactly
    # 0 and the sampling noise of a comparison is smaller
    patch_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    sets = []
    for group in (_as_batch(images), _as_batch(reference)):
        patch_generator = torch.Generator().manual_seed(patch_seed)
        if not group:
            raise ValueError("image_swd needs at least one image in each set")
        per_level: list[list[torch.Tensor]] = [[] for _ in range(levels)]
        for image in group:
            for level, band in enumerate(laplacian_pyramid(image, levels)):
                per_level[level].append(_random_patches(band, patch_size, patches_per_image, patch_generator))
        sets.append([torch.cat(p) if p else torch.zeros(0) for p in per_level])
    values = []
    for level in range(levels):
        a, b = sets[0][level], sets[1][level]
        if a.numel() == 0 or b.numel() == 0:
            continue
        channels = 3
        b_view = b.reshape(b.shape[0], channels, -1)
        mean = b_view.mean(dim=(0, 2), keepdim=True)
        std = b_view.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
        a_norm = ((a.reshape(a.shape[0], channels, -1) - mean) / std).reshape(a.shape[0], -1)
        b_norm = ((b_view - mean) / std).reshape(b.shape[0], -1)
        values.append(sliced_wasserstein(a_norm, b_norm, num_projections, generator=generator))
    if not values:
        raise ValueError(f"images are smaller than the {patch_size}x{patch_size} patches")
    return {"swd": sum(values) / len(values), "levels": values}
