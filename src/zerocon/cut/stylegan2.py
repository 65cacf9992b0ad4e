"""SinCUT's StyleGAN2-based networks: an encoder-decoder generator and a residual discriminator.

The CUT paper's single-image setting (SinCUT) swaps CUT's ResNet generator and PatchGAN for networks made of
StyleGAN2 parts (the paper code's ``netG=stylegan2``, ``netD=stylegan2``, a port of rosinality's
stylegan2-pytorch). This module rebuilds them with the same layers, so the parameter counts match the
reference for the same settings (for SinCUT's ngf 10, ndf 8, 64x64 crops: 3,068,404 in G, 5,885,473 in D),
in plain PyTorch ops (no custom CUDA kernels):

* **equalised learning rate**: weights are stored as N(0, 1) samples and multiplied by ``1/sqrt(fan_in)`` at
  every forward pass, so Adam sees every layer at the same scale. Such layers keep this initialisation; the
  reference does not apply its Xavier/normal ``init_weights`` to StyleGAN2 networks, and neither do we.
* **biased leaky ReLU**: a learnt per-channel bias, leaky ReLU (slope 0.2) and a gain of sqrt(2).
* **blur**: the [1, 3, 3, 1] x [1, 3, 3, 1] / 64 filter applied per channel before every stride-2
  convolution and after the stride-2 transposed convolution (anti-aliasing, as StyleGAN2's ``upfirdn2d``).
* **residual blocks**: two 3x3 convolutions plus a skip path (a 1x1 convolution when the shape changes), the
  sum scaled by 1/sqrt(2).

The generator is ``encoder`` then ``decoder`` (two ``nn.Sequential``). With the reference's
``stylegan2_G_num_downsampling = 1`` and ``n_blocks = 6`` the encoder's layers are::

    0  identity                         (the input pixels, 3 channels, H x W)
    1  1x1 conv 3 -> C(H)               (C(64) = 80 for ngf 10)
    2  down-sampling residual block     (C(H) -> C(H/2) = 160, H/2 x W/2)
    3  residual block                   (160, H/2)
    4  residual block                   (160, H/2)
    5  residual block                   (160, H/2)

so SinCUT's ``nce_layers = 0, 2, 4`` are the input pixels, the output of the down-sampling block and the
output of the second residual block at half resolution. The decoder has the other 3 residual blocks, one
up-sampling modulated convolution (no style input: its modulation is the identity, its demodulation
normalises each output filter; per-pixel noise with a learnt strength) and a 1x1 convolution to RGB with a
biased leaky ReLU (the reference has no tanh at the end; its outputs are unbounded).

Channel widths depend on the training resolution (the crop side, a power of two), as in the reference
(which uses ``2 ** round(log2(min(load_size, crop_size)))``, the crop side whenever it is a power of two no
larger than ``load_size``): the generator has ``round(16384 / res * ngf / 32)`` channels at resolution ``res`` (at most 512
below 64) and the discriminator ``int(16384 / res * ndf / 64)`` (at most 384 below 64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zerocon.cut.networks import binomial_filter, run_layers

SQRT2 = math.sqrt(2.0)
RESOLUTIONS = tuple(2**i for i in range(2, 11))  # 4 .. 1024, the widths table of the reference


def generator_width(ngf: int, res: int) -> int:
    """Generator channels at resolution ``res`` (the reference's table for channel multiplier ngf / 32)."""
    if res not in RESOLUTIONS:
        raise ValueError(f"StyleGAN2 generator widths exist for resolutions 4..1024, not {res}")
    width = int(round(16384 / res * ngf / 32))
    return min(512, width) if res <= 32 else width


def discriminator_width(ndf: int, res: int) -> int:
    """Discriminator channels at resolution ``res`` (channel multiplier ndf / 64, truncated as in the reference)."""
    if res not in RESOLUTIONS:
        raise ValueError(f"StyleGAN2 discriminator widths exist for resolutions 4..1024, not {res}")
    width = int(16384 / res * ndf / 64)
    return min(384, width) if res <= 32 else width


class Blur(nn.Module):
    """Zero-pad by ``pad = (before, after)`` on both axes, then filter every channel with the 4x4 blur.

    ``gain`` scales the filter (4 after a stride-2 up-sampling, which leaves 3 of every 4 pixels zero).
    The filter is a buffer, not a parameter.
    """

    def __init__(self, pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.pad = pad
        self.register_buffer("kernel", (binomial_filter(4) * gain)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.pad
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(channels, 1, -1, -1)
        # a depthwise convolution (several times faster on CPU, backward included, than filtering a
        # (B*C, 1, H, W) view); the filter is symmetric, so correlation = convolution
        return F.conv2d(F.pad(x, (before, after, before, after)), kernel, groups=channels)


class EqualizedConv2d(nn.Module):
    """Convolution with an equalised learning rate: N(0, 1) weights scaled by 1/sqrt(fan_in) when applied."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Fully connected layer with an equalised learning rate, optionally followed by a biased leaky ReLU."""

    def __init__(self, in_features: int, out_features: int, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, self.bias)


class BiasedLeakyReLU(nn.Module):
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with a learnt per-channel bias (StyleGAN2's fused activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias, 0.2) * SQRT2


class ConvLayer(nn.Sequential):
    """[blur] + equalised convolution (stride 2 when ``downsample``) + [biased leaky ReLU].

    Without activation the convolution has no bias (the only such use here is the residual skip path).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            # total padding 4 - 2 + (k - 1), split evenly: the blurred map keeps the grid of a stride-2 conv
            extra = 2 + kernel_size - 1
            layers.append(Blur(((extra + 1) // 2, extra // 2)))
            layers.append(EqualizedConv2d(in_channels, out_channels, kernel_size, stride=2))
        else:
            layers.append(EqualizedConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2))
        if activate:
            layers.append(BiasedLeakyReLU(out_channels))
        super().__init__(*layers)
        self.out_channels = out_channels


class ResBlock(nn.Module):
    """Two 3x3 conv layers (the second one may down-sample) plus a skip path; the sum is divided by sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=downsample)
        if downsample or in_channels != out_channels:
            self.skip: nn.Module = ConvLayer(
                in_channels, out_channels, 1, downsample=downsample, activate=False
            )
        else:
            self.skip = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def fixed_noise(like: torch.Tensor) -> torch.Tensor:
    """One N(0, 1) map of ``like``'s size from seed 0, shared by every image (deterministic inference)."""
    _, _, height, width = like.shape
    noise = torch.randn(1, 1, height, width, generator=torch.Generator().manual_seed(0))
    return noise.to(device=like.device, dtype=like.dtype).expand(like.shape[0], 1, height, width)


class UpsampleStyledConv(nn.Module):
    """StyleGAN2's up-sampling styled convolution without a style vector (SinCUT's decoder has none).

    The weight is demodulated (every output filter scaled to unit L2 norm after the equalised-lr scale), then
    applied as a stride-2 transposed convolution, blurred, given per-pixel noise times a learnt strength
    (zero at the start) and passed through a biased leaky ReLU. Output side = 2 x input side.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        # the transposed conv makes 2H + k - 2 pixels; padding 4 - 2 - (k - 1) + (1, 2) brings it back to 2H
        extra = 2 - (kernel_size - 1)
        self.blur = Blur(((extra + 1) // 2 + 1, extra // 2 + 1), gain=4.0)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.activate = BiasedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, noise_generator: torch.Generator | None = None) -> torch.Tensor:
        weight = self.weight * self.scale
        weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        out = self.blur(out)
        if noise_generator is None:
            noise = fixed_noise(out)
        else:
            batch, _, height, width = out.shape
            noise = torch.randn(
                batch, 1, height, width, generator=noise_generator, device=noise_generator.device
            )
            noise = noise.to(device=out.device, dtype=out.dtype)
        return self.activate(out + self.noise_strength * noise)


class StyleGAN2Generator(nn.Module):
    """SinCUT's generator: a residual encoder-decoder made of StyleGAN2 layers; see the module docstring.

    ``resolution`` is the training resolution (a power of two, 64 for SinCUT); it fixes the channel widths.
    The network itself is fully convolutional: image sides must be multiples of ``2 ** n_downsampling``.
    ``forward``, ``forward_with_features``, ``encode`` and ``feature_channels`` behave like those of
    :class:`~zerocon.cut.networks.ResnetGenerator`, with layer indices into ``self.encoder``.

    The decoder's noise comes from ``noise_generator`` when one is given (training); without one every image
    gets the same fixed noise map, so translating is deterministic and does not depend on the batch.
    """

    def __init__(
        self,
        ngf: int = 10,
        resolution: int = 64,
        n_blocks: int = 6,
        n_downsampling: int = 1,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        res = resolution
        encoder: list[nn.Module] = [nn.Identity(), ConvLayer(in_channels, generator_width(ngf, res), 1)]
        for _ in range(n_downsampling):
            encoder.append(
                ResBlock(generator_width(ngf, res), generator_width(ngf, res // 2), downsample=True)
            )
            res //= 2
        width = generator_width(ngf, res)
        encoder += [ResBlock(width, width, downsample=False) for _ in range(n_blocks // 2)]
        decoder: list[nn.Module] = [ResBlock(width, width, downsample=False) for _ in range(n_blocks // 2)]
        for _ in range(n_downsampling):
            decoder.append(UpsampleStyledConv(generator_width(ngf, res), generator_width(ngf, res * 2)))
            res *= 2
        decoder.append(ConvLayer(generator_width(ngf, res), out_channels, 1))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.in_channels = in_channels
        self.size_multiple = 2**n_downsampling

    def _decode(self, x: torch.Tensor, noise_generator: torch.Generator | None) -> torch.Tensor:
        for module in self.decoder:
            x = module(x, noise_generator) if isinstance(module, UpsampleStyledConv) else module(x)
        return x

    def _check_layers(self, layers: Sequence[int]) -> None:
        bad = [layer for layer in layers if not 0 <= layer < len(self.encoder)]
        if bad:
            raise ValueError(
                f"generator has no encoder layer {bad}; it has {len(self.encoder)} (0..{len(self.encoder) - 1})"
            )

    def forward(self, x: torch.Tensor, noise_generator: torch.Generator | None = None) -> torch.Tensor:
        return self._decode(self.encoder(x), noise_generator)

    def forward_with_features(
        self, x: torch.Tensor, layers: Sequence[int], noise_generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and the outputs of the encoder ``layers``, in one pass."""
        self._check_layers(layers)
        x, feats = run_layers(self.encoder, x, layers)
        return self._decode(x, noise_generator), feats

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of the encoder ``layers``, stopping after the last one (no noise is involved)."""
        self._check_layers(layers)
        return run_layers(self.encoder, x, layers, stop_after_last=True)[1]

    def feature_channels(self, layers: Sequence[int], in_channels: int | None = None) -> list[int]:
        """Channel count of each encoder layer of ``layers`` (to build the projection heads up front)."""
        self._check_layers(layers)
        channels = self.in_channels if in_channels is None else in_channels
        out = {}
        for index, module in enumerate(self.encoder):
            channels = getattr(module, "out_channels", channels)  # the identity keeps the input's
            out[index] = channels
        return [out[layer] for layer in layers]


class StyleGAN2Discriminator(nn.Module):
    """SinCUT's discriminator (the reference's ``netD=stylegan2``): one logit per image of side ``resolution``.

    A 1x1 conv layer, down-sampling residual blocks from ``resolution`` to 4x4, a 3x3 conv layer, and two
    equalised fully connected layers on the flattened 4x4 map. It only accepts ``resolution`` x
    ``resolution`` images (SinCUT trains on 64x64 crops).
    """

    def __init__(self, ndf: int = 8, resolution: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if resolution not in RESOLUTIONS or resolution < 8:
            raise ValueError(
                f"the StyleGAN2 discriminator needs a power-of-two side of 8..1024, not {resolution}"
            )
        self.resolution = resolution
        layers: list[nn.Module] = [ConvLayer(in_channels, discriminator_width(ndf, resolution), 1)]
        res = resolution
        while res > 4:
            layers.append(
                ResBlock(discriminator_width(ndf, res), discriminator_width(ndf, res // 2), downsample=True)
            )
            res //= 2
        self.convs = nn.Sequential(*layers)
        top = discriminator_width(ndf, 4)
        self.final_conv = ConvLayer(top, top, 3)
        self.final_linear = nn.Sequential(
            EqualizedLinear(top * 16, top, activate=True), EqualizedLinear(top, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                f"the discriminator takes {self.resolution}x{self.resolution} images, not {tuple(x.shape[-2:])}"
            )
        out = self.final_conv(self.convs(x))
        return self.final_linear(out.flatten(1))
