"""CUT's networks: parameter counts of the reference implementation, layer shapes, anti-aliasing filters."""

import pytest
import torch

from zerocon.contrastive import PatchSampleMLP
from zerocon.cut.config import CUTConfig
from zerocon.cut.model import CUTModel
from zerocon.cut.networks import (
    BlurDownsample,
    BlurUpsample,
    PatchGANDiscriminator,
    ResnetGenerator,
    count_parameters,
)
from zerocon.errors import ZeroconError


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _mlp(cin: int, width: int = 256) -> int:
    return cin * width + width + width * width + width


# Parameter counts of the reference code's resnet_9blocks G, basic D and mlp_sample F (ngf = ndf = 64,
# instance norm without affine parameters, so every conv has a bias; blur filters are buffers), written out
# from its layer shapes: conv7 3->64, conv3 64->128, conv3 128->256, 9 blocks of two conv3 256->256, conv3
# 256->128 and 128->64 after the up-sampling blurs, conv7 64->3.
REFERENCE_G = (
    _conv(3, 64, 7)
    + _conv(64, 128, 3)
    + _conv(128, 256, 3)
    + 9 * 2 * _conv(256, 256, 3)
    + _conv(256, 128, 3)
    + _conv(128, 64, 3)
    + _conv(64, 3, 7)
)
# 70x70 PatchGAN: conv4 3->64, 64->128, 128->256, 256->512, 512->1.
REFERENCE_D = _conv(3, 64, 4) + _conv(64, 128, 4) + _conv(128, 256, 4) + _conv(256, 512, 4) + _conv(512, 1, 4)
# heads on layers 0, 4, 8, 12, 16 whose features have 3, 128, 256, 256, 256 channels.
REFERENCE_F = _mlp(3) + _mlp(128) + 3 * _mlp(256)


def test_parameter_counts_equal_the_reference_implementation():
    assert (REFERENCE_G, REFERENCE_D, REFERENCE_F) == (11_378_179, 2_764_737, 560_384)
    model = CUTModel(CUTConfig())
    assert count_parameters(model.netG) == REFERENCE_G
    assert count_parameters(model.netD) == REFERENCE_D
    assert count_parameters(model.netF) == REFERENCE_F


def test_nce_layers_are_pixels_downsampling_convs_and_resblocks():
    g = ResnetGenerator(ngf=8, n_blocks=9)
    x = torch.randn(1, 3, 64, 64)
    feats = g.encode(x, (0, 4, 8, 12, 16))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (3, 70, 70),
        (16, 64, 64),
        (32, 32, 32),
        (32, 16, 16),
        (32, 16, 16),
    ]
    assert g.feature_channels((0, 4, 8, 12, 16)) == [3, 16, 32, 32, 32]
    out, feats2 = g.forward_with_features(x, (0, 4, 8, 12, 16))
    assert out.shape == x.shape and out.abs().max() <= 1
    assert all(torch.equal(a, b) for a, b in zip(feats, feats2))
    assert isinstance(CUTModel(CUTConfig(ngf=8, ndf=8)).netF, PatchSampleMLP)


def test_blur_filters_are_binomial_and_fixed():
    down, up = BlurDownsample(2), BlurUpsample(2)
    assert torch.allclose(down.kernel[0, 0], torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0)
    expected_up = torch.tensor([1.0, 3, 3, 1])
    assert torch.allclose(up.kernel[0, 0], (expected_up[:, None] * expected_up[None]) / 64.0 * 4)
    assert not list(down.parameters()) and not list(up.parameters())
    flat = torch.full((1, 2, 8, 8), 0.7)
    assert torch.allclose(down(flat), torch.full((1, 2, 4, 4), 0.7))
    assert torch.allclose(up(flat), torch.full((1, 2, 16, 16), 0.7))


def test_patchgan_output_map_and_generator_keeps_any_multiple_of_4():
    d = PatchGANDiscriminator(ndf=8)
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    g = ResnetGenerator(ngf=4, n_blocks=1)
    for h, w in ((36, 52), (64, 28)):
        assert g(torch.randn(2, 3, h, w)).shape == (2, 3, h, w)


def test_instance_norm_cannot_see_a_global_colour_shift_and_norm_none_can():
    """Why ``norm_g="none"`` exists: the first layer is reflect-pad, conv, instance norm, so adding a constant
    to each input channel adds a constant to each feature map, which the norm removes: an instance-normalised
    generator gives the same output for a scene and its colour-shifted copy. Without the norm it does not."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16, generator=gen) - 0.5
    shifted = x + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    change = {}  # largest output change from the shift, relative to the output's spread
    for norm in ("instance", "none"):
        torch.manual_seed(0)
        g = ResnetGenerator(ngf=8, n_blocks=2, norm=norm).eval()
        with torch.no_grad():
            out, out_shifted = g(x), g(shifted)
        change[norm] = float((out - out_shifted).abs().max() / out.std())
    assert change["instance"] < 1e-4
    assert change["none"] > 1e-2


def test_norm_none_keeps_layer_indices_and_parameter_counts():
    plain, normed = ResnetGenerator(norm="none"), ResnetGenerator()
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in plain.modules())
    assert len(plain.model) == len(normed.model)
    assert plain.feature_channels((0, 4, 8, 12, 16)) == normed.feature_channels((0, 4, 8, 12, 16))
    assert count_parameters(plain) == count_parameters(normed) == REFERENCE_G


def test_unknown_generator_norm_is_a_clear_error():
    with pytest.raises(ZeroconError, match="generator norm"):
        CUTConfig(norm_g="batch")
    with pytest.raises(ZeroconError, match="resnet generator"):
        CUTConfig(size=64, networks="stylegan2", nce_layers=(0, 2, 4), n_blocks=6, norm_g="none")
