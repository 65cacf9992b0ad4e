"""SinCUT's StyleGAN2 networks: reference parameter counts, layer indices, shapes, training, checkpoints."""

import math

import pytest
import torch
from cut_helpers import speed_module, tiny, toy_domains
from PIL import Image

from zerocon.cli import main
from zerocon.cut.config import CUTConfig, preset
from zerocon.cut.model import CUTModel
from zerocon.cut.networks import PatchGANDiscriminator, ResnetGenerator, count_parameters
from zerocon.cut.stylegan2 import (
    Blur,
    ConvLayer,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    discriminator_width,
    generator_width,
)
from zerocon.cut.translate import CUTTranslator
from zerocon.errors import ZeroconError

# The reference (taesungp/contrastive-unpaired-translation, models/stylegan_networks.py) for SinCUT's options
# netG=netD=stylegan2, ngf 10, ndf 8, crop 64 (load 1024), stylegan2_G_num_downsampling 1, n_blocks 6:
#
# Generator widths: round(16384 / res * 10 / 32) -> 80 at 64x64, 160 at 32x32. A "ConvLayer" with activation
# has a bias-free equalised conv plus a per-channel activation bias; the skip ConvLayer has neither bias.
#   encoder: identity                                                       0
#            ConvLayer 3->80 1x1: 3*80 + 80                               320
#            down ResBlock 80->160: conv1 80*80*9 + 80 = 57,680; conv2 160*80*9 + 160 = 115,360;
#                                   skip 1x1 80*160 = 12,800             185,840
#            3 ResBlocks 160: 2 * (160*160*9 + 160) = 461,120 each      1,383,360   -> encoder 1,569,520
#   decoder: 3 ResBlocks 160                                            1,383,360
#            up StyledConv 160->80 (no style: no modulation layer): weight 80*160*9 = 115,200, noise
#                                   strength 1, activation bias 80       115,281
#            ConvLayer 80->3 1x1: 80*3 + 3                                  243   -> decoder 1,498,884
#   total G = 3,068,404
# Discriminator widths: int(16384 / res * 8 / 64) capped at 384 below 64 -> 32 (64), 64 (32), 128 (16),
# 256 (8), 384 (4).
#   ConvLayer 3->32 1x1: 96 + 32                                              128
#   ResBlocks 32->64, 64->128, 128->256, 256->384 (conv1 c*c*9 + c, conv2 c*o*9 + o, skip c*o):
#       29,792 + 118,976 + 475,520 + 1,573,504                             2,197,792
#   final ConvLayer 384->384 3x3: 384*384*9 + 384                          1,327,488
#   EqualLinear 384*4*4 -> 384 with activation: 6144*384 + 384             2,359,680
#   EqualLinear 384 -> 1: 384 + 1                                                385
#   total D = 5,885,473
REFERENCE_G_ENCODER = 320 + 185_840 + 3 * 461_120
REFERENCE_G_DECODER = 3 * 461_120 + 115_281 + 243
REFERENCE_G = 3_068_404
REFERENCE_D = 128 + 29_792 + 118_976 + 475_520 + 1_573_504 + 1_327_488 + 2_359_680 + 385
assert REFERENCE_G == REFERENCE_G_ENCODER + REFERENCE_G_DECODER and REFERENCE_D == 5_885_473


def test_sincut_preset_has_the_reference_settings_and_cut_keeps_its_own():
    sin = preset("sincut")
    assert (sin.networks, sin.ngf, sin.ndf, sin.n_blocks, sin.stylegan2_downsampling) == (
        "stylegan2",
        10,
        8,
        6,
        1,
    )
    assert (sin.nce_layers, sin.num_patches, sin.lambda_nce, sin.negatives_from_minibatch) == (
        (0, 2, 4),
        1,
        4.0,
        True,
    )
    assert (sin.lr, sin.beta1, sin.beta2, sin.size, sin.load_size) == (0.002, 0.0, 0.99, 64, 1024)
    assert (sin.gan_mode, sin.lambda_r1, sin.lambda_identity, sin.nce_idt) == (
        "nonsaturating",
        1.0,
        1.0,
        True,
    )
    for name in ("cut", "fastcut"):
        cfg = preset(name)
        assert (cfg.networks, cfg.ngf, cfg.ndf, cfg.n_blocks, cfg.nce_layers) == (
            "resnet",
            64,
            64,
            9,
            (0, 4, 8, 12, 16),
        )
        assert (cfg.lr, cfg.beta1, cfg.beta2) == (2e-4, 0.5, 0.999)
    # a config saved before the field existed (no "networks" key) is a ResNet one
    old = {
        k: v for k, v in preset("cut").to_dict().items() if k not in ("networks", "stylegan2_downsampling")
    }
    assert CUTConfig.from_dict(old).networks == "resnet"


def test_parameter_counts_equal_the_reference_for_sincut():
    g = StyleGAN2Generator(ngf=10, resolution=64, n_blocks=6, n_downsampling=1)
    d = StyleGAN2Discriminator(ndf=8, resolution=64)
    assert count_parameters(g.encoder) == REFERENCE_G_ENCODER == 1_569_520
    assert count_parameters(g.decoder) == REFERENCE_G_DECODER == 1_498_884
    assert count_parameters(g) == REFERENCE_G
    assert count_parameters(d) == REFERENCE_D
    assert [generator_width(10, r) for r in (64, 32)] == [80, 160]
    assert [discriminator_width(8, r) for r in (64, 32, 16, 8, 4)] == [32, 64, 128, 256, 384]
    model = CUTModel(preset("sincut"))
    assert isinstance(model.netG, StyleGAN2Generator) and isinstance(model.netD, StyleGAN2Discriminator)
    assert count_parameters(model.netG) == REFERENCE_G and count_parameters(model.netD) == REFERENCE_D
    # heads: Linear(c, 256) + ReLU + Linear(256, 256) for c = 3, 160, 160
    assert count_parameters(model.netF) == sum(c * 256 + 256 + 256 * 256 + 256 for c in (3, 160, 160))
    assert model.optG.defaults["lr"] == 0.002 and model.optF.defaults["betas"] == (0.0, 0.99)
    cut = CUTModel(tiny("cut"))
    assert isinstance(cut.netG, ResnetGenerator) and isinstance(cut.netD, PatchGANDiscriminator)


def test_equalised_layers_keep_their_own_initialisation():
    """As in the reference (init_net(..., initialize_weights='stylegan2' not in netG)): N(0, 1) weights
    (scaled at run time), zero biases and zero noise strength, not CUT's Xavier init with gain 0.02."""
    model = CUTModel(preset("sincut"), seed=0)
    for net in (model.netG, model.netD):
        for name, p in net.named_parameters():
            if name.endswith("weight") and p.numel() > 1000:
                assert 0.95 < float(p.detach().std()) < 1.05, name
            elif name.endswith("bias") or name.endswith("noise_strength"):
                assert float(p.detach().abs().max()) == 0.0, name
    heads = [p for n, p in model.netF.named_parameters() if n.endswith("weight")]
    assert all(float(p.detach().std()) < 0.01 for p in heads)  # the heads still get CUT's init (gain 0.02)
    # equalised lr: a layer's output scale does not depend on its fan-in
    conv = ConvLayer(160, 160, 3, activate=False)
    x = torch.randn(4, 160, 16, 16, generator=torch.Generator().manual_seed(0))
    assert 0.8 < float(conv(x).detach().std()) < 1.2


def test_nce_layers_0_2_4_are_pixels_the_down_block_and_the_second_residual_block():
    g = StyleGAN2Generator(ngf=10, resolution=64)
    assert len(g.encoder) == 6 and len(g.decoder) == 5
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out, feats = g.forward_with_features(x, (0, 2, 4))
        encoded = g.encode(x, (0, 2, 4))
        by_hand = g.encoder[2](g.encoder[1](x))
        second = g.encoder[4](g.encoder[3](by_hand))
        assert torch.equal(out, g(x))
    assert [tuple(f.shape) for f in feats] == [(2, 3, 64, 48), (2, 160, 32, 24), (2, 160, 32, 24)]
    assert [f.shape[1] for f in feats] == g.feature_channels((0, 2, 4)) == [3, 160, 160]
    assert torch.equal(feats[0], x) and torch.allclose(feats[1], by_hand) and torch.allclose(feats[2], second)
    assert all(torch.equal(a, b) for a, b in zip(feats, encoded))
    assert g.feature_channels((1, 5)) == [80, 160]
    with pytest.raises(ValueError, match="no encoder layer"):
        g.feature_channels((6,))


@pytest.mark.parametrize("side", [(64, 64), (50, 38), (8, 30)])
def test_output_shape_equals_input_shape_for_even_sides(side):
    g = StyleGAN2Generator(ngf=1, resolution=32, n_blocks=2)
    x = torch.zeros(1, 3, *side)
    with torch.no_grad():
        assert g(x).shape == x.shape
    assert g.size_multiple == 2


def test_blur_is_the_normalised_1331_filter_with_the_stated_padding():
    blur = Blur((2, 2))
    delta = torch.zeros(1, 2, 5, 5)
    delta[0, 1, 2, 2] = 1.0
    out = blur(delta)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    expected = torch.zeros(6, 6)
    expected[1:5, 1:5] = taps[:, None] * taps[None, :]  # 5 + 2 + 2 - 4 + 1 = 6 pixels, centred on the delta
    assert out.shape == (1, 2, 6, 6) and float(out[0, 0].abs().max()) == 0.0
    assert torch.allclose(out[0, 1], expected)
    # a down-sampling conv layer halves even sides exactly (blur pad 2 + 2, 3x3 stride 2)
    assert ConvLayer(2, 4, 3, downsample=True)(torch.zeros(1, 2, 10, 14)).shape == (1, 4, 5, 7)


def test_discriminator_gives_one_logit_per_image_and_rejects_other_sizes():
    d = StyleGAN2Discriminator(ndf=1, resolution=32)
    assert d(torch.zeros(3, 3, 32, 32)).shape == (3, 1)
    with pytest.raises(ValueError, match="32x32"):
        d(torch.zeros(1, 3, 64, 64))


def test_stylegan2_settings_are_checked():
    with pytest.raises(ZeroconError, match="power of two"):
        preset("sincut", size=48)
    with pytest.raises(ZeroconError, match="nce_layers"):
        preset("sincut", n_blocks=2)  # encoder layers 0..3: layer 4 does not exist
    with pytest.raises(ZeroconError, match="unknown networks"):
        preset("cut", networks="vgg")
    assert preset("sincut", size=128).size == 128


def test_training_steps_change_weights_with_finite_losses_and_seeded_noise():
    cfg = tiny("sincut", num_patches=1)
    speed = speed_module()
    g = torch.Generator().manual_seed(2)
    batch = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g) * 2 - 1)
    model = CUTModel(cfg, total_steps=10, seed=0)
    before = {n: p.detach().clone() for n, p in model.netG.named_parameters()}
    d_before = {n: p.detach().clone() for n, p in model.netD.named_parameters()}
    history = [model.train_step(batch, speed.context(s, torch.Generator().manual_seed(s))) for s in range(10)]
    assert set(history[0]) == {"D_real", "D_fake", "D_R1", "G_GAN", "NCE", "NCE_Y", "idt"}
    assert all(math.isfinite(v) for record in history for v in record.values())
    first, last = history[:3], history[-3:]
    # the discriminator learns to separate the fixed real batch from the fakes
    assert sum(h["D_real"] + h["D_fake"] for h in last) < 0.85 * sum(h["D_real"] + h["D_fake"] for h in first)
    # the generator learns the L1 identity on the real B batch
    assert history[-1]["idt"] < 0.9 * history[0]["idt"]
    # PatchNCE falls from its initial value to about chance, lambda * ln 4 (1 positive + 3 negatives): on these
    # random images the heads first learn to discard the uninformative input-output pairing
    assert all(h["NCE"] < 0.7 * history[0]["NCE"] for h in history[1:])
    assert all(abs(h["NCE"] - 4 * math.log(4)) < 0.1 for h in last)
    changed = [n for n, p in model.netG.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # every generator tensor moved, the noise strength included
    assert all(not torch.equal(p, d_before[n]) for n, p in model.netD.named_parameters())
    # same seeds, same run: the decoder noise comes from the step generators, not the global RNG
    repeats = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        again = CUTModel(cfg, total_steps=10, seed=0)
        steps = [
            again.train_step(batch, speed.context(s, torch.Generator().manual_seed(s))) for s in range(2)
        ]
        repeats.append((steps, [p.detach().clone() for p in again.netG.parameters()]))
    assert repeats[0][0] == repeats[1][0] == history[:2]
    assert all(torch.equal(a, b) for a, b in zip(repeats[0][1], repeats[1][1]))


@pytest.fixture(scope="module")
def sincut_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sincut")
    toy_domains(root / "data", count=1, side=48)
    run = root / "run"
    args = ["cut", "train", str(root / "data"), "--out", str(run), "--preset", "sincut", "--steps", "2"]
    args += ["--size", "32", "--load-size", "48", "--ngf", "1", "--ndf", "1", "--n-blocks", "4"]
    args += ["--batch-size", "2", "--no-progress", "--sample-every", "2", "--checkpoint-every", "2"]
    assert main(args) == 0
    return run


def test_sincut_checkpoint_rebuilds_the_stylegan2_generator_and_translates(sincut_run, tmp_path):
    translator = CUTTranslator.from_checkpoint(sincut_run, preset="sincut")
    assert isinstance(translator.generator, StyleGAN2Generator)
    assert translator.config.networks == "stylegan2" and translator.multiple == 2
    assert any(
        float(p.detach().abs().max()) > 0 for n, p in translator.generator.named_parameters() if "bias" in n
    )
    g = torch.Generator().manual_seed(0)
    images = [
        Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).byte().numpy())
        for h, w in ((37, 45), (64, 64), (37, 45), (33, 47))
    ]
    outputs = translator.translate(images, batch_size=4)
    assert [o.size for o in outputs] == [im.size for im in images]
    one_by_one = [translator.translate([im], batch_size=1)[0] for im in images]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(outputs, one_by_one))  # fixed noise
    out_dir = tmp_path / "out"
    code = main(
        [
            "cut",
            "translate",
            str(sincut_run.parent / "data" / "trainA"),
            "--checkpoint",
            str(sincut_run),
            "--out",
            str(out_dir),
        ]
    )
    assert code == 0 and len(list(out_dir.glob("*.png"))) == 1
    with pytest.raises(ZeroconError, match="not 'cut'"):
        CUTTranslator.from_checkpoint(sincut_run, preset="cut")
