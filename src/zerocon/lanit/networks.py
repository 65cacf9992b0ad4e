"""StarGAN v2 networks as LANIT uses them: multi-hot labels select and average per-domain styles.

Shapes follow StarGAN v2 (Choi et al., CVPR 2020) without the high-pass face branch (LANIT runs ``w_hpf=0``):
at ``img_size`` 256 the base width is 2**14 / 256 = 64 channels, doubled per down-sampling block up to
``max_conv_dim`` 512. Both widths are parameters so a 64-pixel ShapesWorld model can stay small.

Domain labels are float multi-hot tensors ``y`` of shape (B, N). The mapping network and the style encoder
compute one style per domain and return the mean over the active domains (LANIT's aggregated style); the
discriminator returns one real/fake logit per domain and the adversarial loss uses the active ones.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NetworkConfig:
    """Sizes of the four networks."""

    img_size: int = 256
    """Square image side; a power of two, at least 16."""
    num_domains: int = 10
    """Number of domain words (plus one if a slack domain is used)."""
    style_dim: int = 64
    latent_dim: int = 16
    base_dim: int | None = None
    """Channels after the first convolution; ``None`` = StarGAN v2's 2**14 // img_size (64 at 256 px)."""
    max_conv_dim: int = 512
    mapping_dim: int = 512
    """Width of the mapping network's layers (512 in StarGAN v2 / LANIT)."""
    output_norm: bool = True
    """Instance-normalise the generator's last features before ``to_rgb`` (StarGAN v2 does). That norm fixes
    each output channel's spatial mean up to the shape of its distribution, so a flat background colour cannot
    pass from input to output; ``False`` drops it (ShapesWorld preset)."""

    def __post_init__(self) -> None:
        if self.img_size < 16 or self.img_size & (self.img_size - 1):
            raise ValueError(f"img_size must be a power of two >= 16, got {self.img_size}")
        if self.num_domains < 1:
            raise ValueError("num_domains must be at least 1")

    @property
    def first_dim(self) -> int:
        return self.base_dim if self.base_dim is not None else 2**14 // self.img_size


class ResBlk(nn.Module):
    """Pre-activation residual block with optional instance norm and 2x average-pool down-sampling."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False) -> None:
        super().__init__()
        self.normalize, self.downsample = normalize, downsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned_sc:
            x = self.conv1x1(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(F.leaky_relu(x, 0.2))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(F.leaky_relu(x, 0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._shortcut(x) + self._residual(x)) / math.sqrt(2)


class AdaIN(nn.Module):
    """Adaptive instance norm: ``(1 + gamma(s)) * IN(x) + beta(s)``."""

    def __init__(self, style_dim: int, num_features: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Residual block with AdaIN in both norms and optional nearest-neighbour 2x up-sampling."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv1x1(x) if self.learned_sc else x

    def _residual(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm1(x, s), 0.2)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv1(x)
        x = F.leaky_relu(self.norm2(x, s), 0.2)
        return self.conv2(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return (self._residual(x, s) + self._shortcut(x)) / math.sqrt(2)


class Generator(nn.Module):
    """Content encoder (down-sampling ResBlks) + AdaIN decoder; ``forward(x, s)`` maps x to style s."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        dim_in = cfg.first_dim
        self.from_rgb = nn.Conv2d(3, dim_in, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        self.to_rgb = nn.Sequential(
            nn.InstanceNorm2d(dim_in, affine=True) if cfg.output_norm else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Conv2d(dim_in, 3, 1, 1, 0),
        )
        repeat = int(math.log2(cfg.img_size)) - 4
        for _ in range(repeat):
            dim_out = min(dim_in * 2, cfg.max_conv_dim)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, cfg.style_dim, upsample=True))
            dim_in = dim_out
        for _ in range(2):  # bottleneck
            self.encode.append(ResBlk(dim_in, dim_in, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_in, dim_in, cfg.style_dim))

    def content(self, x: torch.Tensor) -> torch.Tensor:
        """The content code: the encoder's bottleneck feature map."""
        h = self.from_rgb(x)
        for block in self.encode:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.content(x)  # (B, C, H/2^r, W/2^r)
        for block in self.decode:
            h = block(h, s)
        return self.to_rgb(h)


def aggregate(per_domain: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of the per-domain vectors (B, N, S) over the active domains of y (B, N); zero for an empty row."""
    y = y.to(per_domain.dtype)
    count = y.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1)
    return (per_domain * y[:, :, None]).sum(dim=1) / count


class MappingNetwork(nn.Module):
    """z (B, latent_dim) and multi-hot y (B, N) -> style (B, style_dim): shared trunk, one head per domain."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        hidden = cfg.mapping_dim
        layers: list[nn.Module] = [nn.Linear(cfg.latent_dim, hidden), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList(
            nn.Sequential(
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, cfg.style_dim),
            )
            for _ in range(cfg.num_domains)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        per_domain = torch.stack([head(h) for head in self.unshared], dim=1)  # (B, N, S)
        return aggregate(per_domain, y)


class _Trunk(nn.Module):
    """The down-sampling trunk shared by the style encoder and the discriminator, ending in (B, C) features."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        dim_in = cfg.first_dim
        blocks: list[nn.Module] = [nn.Conv2d(3, dim_in, 3, 1, 1)]
        for _ in range(int(math.log2(cfg.img_size)) - 2):
            dim_out = min(dim_in * 2, cfg.max_conv_dim)
            blocks.append(ResBlk(dim_in, dim_out, downsample=True))
            dim_in = dim_out
        blocks += [nn.LeakyReLU(0.2), nn.Conv2d(dim_in, dim_in, 4, 1, 0), nn.LeakyReLU(0.2)]
        self.main = nn.Sequential(*blocks)
        self.out_dim = dim_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten(1)  # (B, C)


class StyleEncoder(nn.Module):
    """Image x and multi-hot y -> style: one linear head per domain on a shared trunk, averaged over y."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.trunk = _Trunk(cfg)
        self.unshared = nn.ModuleList(
            nn.Linear(self.trunk.out_dim, cfg.style_dim) for _ in range(cfg.num_domains)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        per_domain = torch.stack([head(h) for head in self.unshared], dim=1)  # (B, N, S)
        return aggregate(per_domain, y)


class Discriminator(nn.Module):
    """Multi-domain discriminator: one real/fake logit per domain, (B, N)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.trunk = _Trunk(cfg)
        self.head = nn.Linear(self.trunk.out_dim, cfg.num_domains)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def he_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU) weights and zero biases for convolutions and linear layers."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass
class Networks:
    """The trained networks and their EMA copies."""

    generator: Generator
    mapping: MappingNetwork
    style_encoder: StyleEncoder
    discriminator: Discriminator
    generator_ema: Generator
    mapping_ema: MappingNetwork
    style_encoder_ema: StyleEncoder


def build_networks(cfg: NetworkConfig, seed: int = 0) -> Networks:
    """All networks with He initialisation drawn from ``seed``; EMA copies start equal to the originals."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator, mapping = Generator(cfg), MappingNetwork(cfg)
        style_encoder, discriminator = StyleEncoder(cfg), Discriminator(cfg)
        for net in (generator, mapping, style_encoder, discriminator):
            net.apply(he_init)
    return Networks(
        generator,
        mapping,
        style_encoder,
        discriminator,
        copy.deepcopy(generator).requires_grad_(False),
        copy.deepcopy(mapping).requires_grad_(False),
        copy.deepcopy(style_encoder).requires_grad_(False),
    )
