"""CUT / FastCUT / SinCUT settings as one dataclass, with the paper code's defaults.

``CUTConfig()`` is the ``cut`` preset. :func:`preset` returns a named preset, optionally with some fields
changed; the CLI maps its options onto these fields and keeps no second copy of the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from zerocon.errors import ZeroconError

GENERATOR_NORMS = ("instance", "none")
"""Normalisations of the ``resnet`` generator (``CUTConfig.norm_g``)."""


@dataclass(frozen=True)
class CUTConfig:
    """Everything that defines a CUT model and its training step (not the loop; see ``TrainConfig``)."""

    preset: str = "cut"
    """Name of the preset these settings came from; stored in checkpoints and checked when loading."""
    size: int = 256
    """Side of the square training crops (a multiple of 4)."""
    load_size: int | None = None
    """Images are resized to ``load_size`` x ``load_size`` and randomly cropped to ``size`` (the paper:
    286 -> 256). ``None`` means ``round(size * 286 / 256)``."""
    flip: bool = True
    """Random horizontal flip of the training images (data augmentation)."""
    networks: str = "resnet"
    """Network family: ``resnet`` (CUT's ResNet generator and 70x70 PatchGAN, for ``cut`` and ``fastcut``) or
    ``stylegan2`` (SinCUT's StyleGAN2-based encoder-decoder and discriminator, :mod:`zerocon.cut.stylegan2`;
    it needs a power-of-two ``size`` of 8..1024, which also sets its channel widths). Checkpoints store it, so
    a checkpoint rebuilds the networks it was trained with (older ones, without it, are ``resnet``)."""
    ngf: int = 64
    """Generator width: channels of the first convolution (``resnet``); for ``stylegan2`` the reference's
    channel multiplier ``ngf / 32`` (SinCUT: 10, i.e. 80 channels at 64x64 and 160 at 32x32)."""
    ndf: int = 64
    """Discriminator width; for ``stylegan2`` the multiplier ``ndf / 64`` (SinCUT: 8, 32 channels at 64x64)."""
    n_blocks: int = 9
    """Residual blocks of the generator; ``stylegan2`` puts half of them in the encoder and half in the
    decoder (SinCUT: 6, 3 + 3)."""
    stylegan2_downsampling: int = 1
    """``stylegan2`` only: down-sampling residual blocks of the generator's encoder (and up-sampling
    convolutions of its decoder); image sides must be multiples of ``2 ** stylegan2_downsampling``."""
    norm_g: str = "instance"
    """``resnet`` generator's normalisation: ``instance`` (the paper's) or ``none`` (the reference's
    ``--normG none``). Instance norm cannot pass a flat colour through unchanged, which matters for synthetic
    images of flat colours such as ShapesWorld (see :class:`~zerocon.cut.networks.ResnetGenerator`)."""
    n_layers_d: int = 3
    """Down-sampling layers of the PatchGAN (3 = 70x70 receptive field)."""
    nce_layers: tuple[int, ...] = (0, 4, 8, 12, 16)
    """Generator layers whose features enter PatchNCE. ``resnet``: the input pixels, the two down-sampling
    convs and res-blocks 1 and 5. ``stylegan2`` (SinCUT: 0, 2, 4; indices into its encoder): the input pixels,
    the down-sampling block and the second residual block at half resolution."""
    num_patches: int = 256
    """Locations sampled per layer and image."""
    head_channels: int = 256
    """Width and output size of each projection MLP."""
    nce_temperature: float = 0.07
    """PatchNCE temperature tau."""
    lambda_gan: float = 1.0
    """Weight of the generator's adversarial loss."""
    lambda_nce: float = 1.0
    """Weight of PatchNCE (FastCUT: 10)."""
    nce_idt: bool = True
    """Identity PatchNCE on target images, L_NCE(G, H, Y) (CUT: on; FastCUT: off). The two NCE terms are then
    averaged, as in the paper's code."""
    flip_equivariance: bool = False
    """FastCUT: flip the generator's input with probability 1/2 and flip its features back for PatchNCE."""
    negatives_from_minibatch: bool = False
    """Draw negatives from all images of the batch (SinCUT) instead of only the query's own image."""
    gan_mode: str = "lsgan"
    """``lsgan`` (MSE against 1/0, the CUT default) or ``nonsaturating`` (softplus; SinCUT)."""
    lambda_r1: float = 0.0
    """R1 gradient penalty on real images for D (SinCUT: 1, applied with weight 1/2)."""
    lambda_identity: float = 0.0
    """Pixel L1 identity loss |G(y) - y| (SinCUT: 1)."""
    lr: float = 2e-4
    """Adam learning rate of G, D and the heads."""
    beta1: float = 0.5
    beta2: float = 0.999
    decay_fraction: float = 0.5
    """Fraction of the training steps over which the learning rate decays linearly to zero at the end; it is
    constant before. The paper: 200 constant + 200 decaying epochs for CUT (0.5), 150 + 50 for FastCUT (0.25).
    """
    crop_during_decay: bool = False
    """Keep the resize-crop augmentation in the learning-rate decay phase. The reference code turns it off
    there (images resized straight to ``size``; flips stay), and so does zerocon by default."""
    init_gain: float = 0.02
    """Xavier-normal gain of every convolution and linear layer (``stylegan2``: of the projection heads only;
    its equalised-lr layers keep their own N(0, 1) initialisation, as in the reference)."""
    zoom_range: tuple[float, float] = (1.0, 1.0)
    """Single-image mode: random zoom of the whole image before cropping (SinCUT: 1/3 .. 1)."""

    def __post_init__(self) -> None:
        if self.size % 4:
            raise ZeroconError(f"--size must be a multiple of 4 (got {self.size})")
        if self.gan_mode not in ("lsgan", "nonsaturating"):
            raise ZeroconError(f"unknown gan_mode '{self.gan_mode}' (lsgan or nonsaturating)")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ZeroconError("decay_fraction must be in [0, 1]")
        if self.norm_g not in GENERATOR_NORMS:
            raise ZeroconError(f"unknown generator norm '{self.norm_g}' ({' or '.join(GENERATOR_NORMS)})")
        if self.networks not in ("resnet", "stylegan2"):
            raise ZeroconError(f"unknown networks '{self.networks}' (resnet or stylegan2)")
        if self.networks == "stylegan2":
            self._check_stylegan2()

    def _check_stylegan2(self) -> None:
        if self.norm_g != "instance":
            raise ZeroconError("--norm-g applies to the resnet generator (cut, fastcut), not to stylegan2")
        if self.size not in {2**i for i in range(3, 11)}:
            raise ZeroconError(
                f"the stylegan2 networks need --size to be a power of two of 8..1024 (got {self.size})"
            )
        if not 0 <= self.stylegan2_downsampling <= self.size.bit_length() - 3:
            raise ZeroconError(
                f"stylegan2_downsampling {self.stylegan2_downsampling} is too many for size {self.size}"
            )
        encoder_layers = 2 + self.stylegan2_downsampling + self.n_blocks // 2
        bad = [layer for layer in self.nce_layers if not 0 <= layer < encoder_layers]
        if bad or not self.nce_layers:
            raise ZeroconError(
                f"nce_layers {list(self.nce_layers)} do not fit the stylegan2 encoder's {encoder_layers} layers "
                f"(0..{encoder_layers - 1} with --n-blocks {self.n_blocks})"
            )

    def plain_from_step(self, total_steps: int) -> int | None:
        """First step without resize-crop (the start of the decay phase), or ``None`` to crop throughout."""
        decay_steps = round(total_steps * self.decay_fraction)
        if self.crop_during_decay or decay_steps == 0:
            return None
        return total_steps - decay_steps + 1  # the first step whose learning rate is below the constant

    @property
    def resolved_load_size(self) -> int:
        return self.load_size if self.load_size is not None else round(self.size * 286 / 256)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["method"] = "cut"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CUTConfig:
        names = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)


PRESETS: dict[str, CUTConfig] = {
    # CUT: lambda_NCE 1 with identity PatchNCE on Y; 200 + 200 epochs in the paper.
    "cut": CUTConfig(),
    # FastCUT: lambda_NCE 10, flip equivariance, no identity term; 150 + 50 epochs in the paper.
    "fastcut": CUTConfig(
        preset="fastcut", lambda_nce=10.0, nce_idt=False, flip_equivariance=True, decay_fraction=0.25
    ),
    # SinCUT: one image per domain, trained on 64x64 crops of randomly zoomed copies (batch 16 in the paper),
    # the paper code's StyleGAN2-based networks (ngf 10, ndf 8, one down-sampling, 3 + 3 residual blocks) with
    # StyleGAN2's optimiser (Adam 2e-3, betas (0, 0.99)), identity PatchNCE as in CUT on layers 0, 2, 4 with
    # 1 patch per layer and negatives from the whole minibatch, lambda_NCE 4, non-saturating GAN loss with R1,
    # L1 identity.
    "sincut": CUTConfig(
        preset="sincut",
        size=64,
        load_size=1024,
        flip=True,
        networks="stylegan2",
        ngf=10,
        ndf=8,
        n_blocks=6,
        stylegan2_downsampling=1,
        nce_layers=(0, 2, 4),
        lr=0.002,
        beta1=0.0,
        beta2=0.99,
        num_patches=1,
        negatives_from_minibatch=True,
        lambda_nce=4.0,
        nce_idt=True,
        gan_mode="nonsaturating",
        lambda_r1=1.0,
        lambda_identity=1.0,
        zoom_range=(1.0 / 3.0, 1.0),
    ),
}


def preset(name: str, **overrides: Any) -> CUTConfig:
    """The preset ``name`` (``cut``, ``fastcut`` or ``sincut``) with ``overrides`` applied (None = keep)."""
    if name not in PRESETS:
        raise ZeroconError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **changes)
