"""CUT's networks: the ResNet generator, the 70x70 PatchGAN discriminator and their initialisation.

Layer for layer these follow the defaults of the CUT paper's code (``resnet_9blocks``, ``basic`` D, instance
norm without affine parameters, reflection padding, anti-aliased down- and up-sampling), so the parameter
counts are the same and ``nce_layers = 0, 4, 8, 12, 16`` name the same tensors: the padded input pixels, the
outputs of the two down-sampling convolutions and of residual blocks 1 and 5.

The projection heads live in :mod:`zerocon.contrastive` (:class:`~zerocon.contrastive.PatchSampleMLP`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zerocon.cut.config import GENERATOR_NORMS

DEFAULT_NCE_LAYERS = (0, 4, 8, 12, 16)


def run_layers(
    modules: Sequence[nn.Module], x: torch.Tensor, layers: Sequence[int], stop_after_last: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Apply ``modules`` in order, keeping the outputs of the indices in ``layers``; with ``stop_after_last``
    stop once the last of them is computed (PatchNCE's encoder pass). Returns the final tensor and the kept ones."""
    wanted, last = set(layers), max(layers)
    feats = []
    for index, module in enumerate(modules):
        x = module(x)
        if index in wanted:
            feats.append(x)
        if stop_after_last and index == last:
            break
    return x, feats


def binomial_filter(size: int) -> torch.Tensor:
    """Normalised 2-D binomial (blur) filter of side ``size`` (3 -> [1,2,1] x [1,2,1] / 16)."""
    coeffs = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    kernel = coeffs[:, None] * coeffs[None, :]
    return (kernel / kernel.sum()).float()


class BlurDownsample(nn.Module):
    """Anti-aliased down-sampling by 2: reflect-pad, blur with a 3x3 binomial filter, keep every 2nd pixel.

    The filter is a fixed buffer (no parameters), applied per channel.
    """

    def __init__(self, channels: int, filter_size: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.pad = ((filter_size - 1) // 2, filter_size // 2) * 2  # left, right, top, bottom
        kernel = binomial_filter(filter_size)
        self.register_buffer("kernel", kernel[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pad, mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """Anti-aliased up-sampling by 2: replicate-pad by 1, transposed conv with a fixed 4x4 binomial filter.

    Equivalent to zero-insertion followed by a [1,3,3,1] x [1,3,3,1] blur (scaled by 4 to keep the mean).
    """

    def __init__(self, channels: int, filter_size: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.filter_size = filter_size
        kernel = binomial_filter(filter_size) * 4.0
        self.register_buffer("kernel", kernel[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        padding = 1 + (self.filter_size - 1) // 2
        out = F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=padding, groups=self.channels)
        out = out[:, :, 1:, 1:]
        if self.filter_size % 2 == 0:
            out = out[:, :, :-1, :-1]
        return out


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The generator's normalisation: ``instance`` (CUT's default, no affine parameters) or ``none``.

    ``none`` is an ``nn.Identity`` placeholder, so layer indices (and ``nce_layers``) stay the same.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown generator norm {kind!r} (choose from {', '.join(GENERATOR_NORMS)})")


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 convolutions with instance norm (or none) and a skip connection."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=True),
            norm_layer(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=True),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CUT's ``resnet_9blocks`` generator as one ``nn.Sequential`` (so layer indices match the paper's code).

    Two anti-aliased down-samplings, ``n_blocks`` residual blocks at 1/4 resolution, two anti-aliased
    up-samplings; input and output in [-1, 1]. Image sides must be multiples of 4.

    ``norm="none"`` drops every instance norm (the reference's ``--normG none``; unlike the reference, the
    convolutions keep their biases). Instance norm removes each feature map's mean, so absolute flat colours
    (ShapesWorld's backgrounds and objects) cannot pass through the generator unchanged; without it they can.
    """

    size_multiple = 4
    """Image sides must be multiples of this (two stride-2 down-samplings)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=True),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        channels = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, channels * 2, 3, padding=1, bias=True),
                norm_layer(norm, channels * 2),
                nn.ReLU(True),
                BlurDownsample(channels * 2),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, norm) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [
                BlurUpsample(channels),
                nn.Conv2d(channels, channels // 2, 3, padding=1, bias=True),
                norm_layer(norm, channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_with_features(
        self, x: torch.Tensor, layers: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and the outputs of the ``layers`` (indices into ``self.model``), in one pass."""
        return run_layers(self.model, x, layers)

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of the ``layers``, stopping after the last one (the encoder pass of PatchNCE)."""
        return run_layers(self.model, x, layers, stop_after_last=True)[1]

    def feature_channels(self, layers: Sequence[int], in_channels: int = 3) -> list[int]:
        """Channel count of each of ``layers`` (to build the projection heads before any forward pass)."""
        channels, out = in_channels, {}
        for index, module in enumerate(self.model):
            if isinstance(module, nn.Conv2d):
                channels = module.out_channels
            out[index] = channels
        missing = [layer for layer in layers if layer not in out]
        if missing:
            raise ValueError(f"generator has no layer {missing}; it has {len(self.model)} layers")
        return [out[layer] for layer in layers]


class PatchGANDiscriminator(nn.Module):
    """The 70x70 PatchGAN (``n_layers = 3``) with anti-aliased down-sampling; outputs a map of logits."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, padding=1),
            nn.LeakyReLU(0.2, True),
            BlurDownsample(ndf),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=True),
                nn.InstanceNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
                BlurDownsample(ndf * mult),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=True),
            nn.InstanceNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """CUT's default initialisation: Xavier-normal weights with ``gain``, zero biases (convs and linears)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters (fixed blur filters are buffers and do not count)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
