"""CUT as a :class:`~zerocon.training.TrainableMethod`: networks, losses and one training step.

One step does what the paper's code does, in the same order: a generator pass, a discriminator update on
``G(x)`` (detached) and real ``y``, then one update of the generator and the projection heads on
``lambda_GAN * GAN(D(G(x)), real) + PatchNCE`` (CUT averages the NCE terms on X and on Y).

Faster than the paper's code without changing the maths:

* the encoder features of the input, which PatchNCE uses only as detached keys, are taken from the
  generator pass that produced ``G(x)`` instead of a second encoder pass (with flip equivariance, a flipped
  step still needs the unflipped features, computed without autograd);
* the key projections are computed without autograd (the keys are detached anyway);
* the encoder passes over ``G(x)`` and ``G(y)`` (identity term) run as one batch; instance norm is per image,
  and every term still draws its own patch locations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zerocon.contrastive import PatchSampleMLP, patch_nce_loss
from zerocon.cut.config import CUTConfig
from zerocon.cut.networks import PatchGANDiscriminator, ResnetGenerator, init_weights
from zerocon.cut.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from zerocon.images import tensor_to_pil
from zerocon.training import StepContext, TrainableMethod


def gan_loss(prediction: torch.Tensor, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Adversarial loss of a discriminator output map: LSGAN (MSE to 1/0) or non-saturating (softplus)."""
    if mode == "lsgan":
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return F.mse_loss(prediction, target)
    if mode == "nonsaturating":
        signed = -prediction if target_is_real else prediction
        return F.softplus(signed).flatten(1).mean(dim=1).mean()
    raise ValueError(f"unknown GAN loss '{mode}'")


def build_generator(cfg: CUTConfig) -> ResnetGenerator | StyleGAN2Generator:
    """The generator of ``cfg.networks``, initialised as the reference does (ResNet: Xavier-normal with
    ``init_gain``; StyleGAN2: its equalised-lr layers' own N(0, 1) weights, no ``init_weights``)."""
    if cfg.networks == "stylegan2":
        return StyleGAN2Generator(
            ngf=cfg.ngf, resolution=cfg.size, n_blocks=cfg.n_blocks, n_downsampling=cfg.stylegan2_downsampling
        )
    return init_weights(ResnetGenerator(ngf=cfg.ngf, n_blocks=cfg.n_blocks, norm=cfg.norm_g), cfg.init_gain)


def build_discriminator(cfg: CUTConfig) -> PatchGANDiscriminator | StyleGAN2Discriminator:
    """The discriminator of ``cfg.networks``, initialised like :func:`build_generator`."""
    if cfg.networks == "stylegan2":
        return StyleGAN2Discriminator(ndf=cfg.ndf, resolution=cfg.size)
    return init_weights(PatchGANDiscriminator(ndf=cfg.ndf, n_layers=cfg.n_layers_d), cfg.init_gain)


def linear_decay_factor(step: int, total_steps: int, decay_fraction: float) -> float:
    """Learning-rate multiplier: 1 for the first steps, then linear decay over the last ``decay_fraction``.

    The paper's rule ``1 - max(0, e - n_const) / (n_decay + 1)``, counted in steps instead of epochs.
    """
    decay_steps = round(total_steps * decay_fraction)
    constant_steps = total_steps - decay_steps
    return 1.0 - max(0, step - constant_steps) / float(decay_steps + 1)


class CUTModel(TrainableMethod):
    """Generator G, discriminator D and projection heads F, with their Adam optimisers and LR schedules.

    G and D are CUT's ResNet / PatchGAN or SinCUT's StyleGAN2 networks (``config.networks``).

    Everything (heads included) is built in ``__init__`` from ``seed``, so two models with the same seed have
    identical weights, and the optimisers exist before any device placement or distributed wrapping.
    """

    def __init__(self, config: CUTConfig | None = None, total_steps: int = 1000, seed: int = 0) -> None:
        self.cfg = config or CUTConfig()
        self.total_steps = total_steps
        cfg = self.cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.netG = build_generator(cfg)
            self.netD = build_discriminator(cfg)
            self.netF = PatchSampleMLP(
                self.netG.feature_channels(cfg.nce_layers), cfg.head_channels, init_gain=cfg.init_gain
            )
        betas = (cfg.beta1, cfg.beta2)
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=cfg.lr, betas=betas)
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=cfg.lr, betas=betas)
        self.optF = torch.optim.Adam(self.netF.parameters(), lr=cfg.lr, betas=betas)

        def rule(step: int) -> float:
            return linear_decay_factor(step, total_steps, cfg.decay_fraction)

        self._schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, rule)
            for name, opt in (("G", self.optG), ("D", self.optD), ("F", self.optF))
        }

    # -- TrainableMethod ---------------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.netG, "D": self.netD, "F": self.netF}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.optG, "D": self.optD, "F": self.optF}

    def schedulers(self) -> dict[str, Any]:
        return self._schedulers

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def collate(
        self, items: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])

    def _prepare(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return x.to(device)

    # -- losses ------------------------------------------------------------------------------------------
    def nce_loss(
        self,
        query_feats: Sequence[torch.Tensor],
        key_feats: Sequence[torch.Tensor],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """PatchNCE between output features (queries) and input features (detached keys), mean over layers.

        Locations are drawn once per layer from ``generator`` and shared by query and key.
        """
        cfg = self.cfg
        with torch.no_grad():
            keys, ids = self.netF([k.detach() for k in key_feats], cfg.num_patches, generator=generator)
        queries, _ = self.netF(query_feats, cfg.num_patches, location_ids=ids)
        total = query_feats[0].new_zeros((), dtype=torch.float32)
        for q, k in zip(queries, keys, strict=True):
            loss = patch_nce_loss(q.float(), k.float(), cfg.nce_temperature, cfg.negatives_from_minibatch)
            total = total + loss.mean() * cfg.lambda_nce
        return total / len(queries)

    def r1_penalty(self, prediction: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """R1: squared gradient norm of D's summed output on real images, per image, averaged, times lambda/2."""
        (grad,) = torch.autograd.grad(prediction.sum(), real, create_graph=True)
        return grad.pow(2).flatten(1).sum(1).mean() * (self.cfg.lambda_r1 * 0.5)

    # -- the step ----------------------------------------------------------------------------------------
    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        cfg = self.cfg
        gen = ctx.generator
        real_a, real_b = (self._prepare(x, ctx.device) for x in batch)
        n = real_a.shape[0]
        use_idt = cfg.nce_idt or cfg.lambda_identity > 0
        real = torch.cat([real_a, real_b]) if use_idt else real_a
        flipped = cfg.flip_equivariance and bool(torch.rand((), generator=gen) < 0.5)
        if flipped:
            real = real.flip(3)

        # 1. generator pass; its encoder features of the input are PatchNCE's keys. The StyleGAN2 decoder's
        # noise comes from the step's generator.
        noise = {"noise_generator": gen} if isinstance(self.netG, StyleGAN2Generator) else {}
        fake_all, real_feats = self.netG.forward_with_features(real, cfg.nce_layers, **noise)
        fake_b = fake_all[:n]
        idt_b = fake_all[n:] if use_idt else None
        if flipped:  # keys must be features of the unflipped input, as in the paper
            with torch.no_grad():
                real_feats = self.netG.encode(real.flip(3), cfg.nce_layers)
        real_feats = [f.detach() for f in real_feats]

        # 2. discriminator update
        self.netD.requires_grad_(True)
        pred_fake = self.netD(fake_b.detach())
        if cfg.lambda_r1 > 0:
            real_b = real_b.detach().requires_grad_(True)
        pred_real = self.netD(real_b)
        loss_d_fake = gan_loss(pred_fake, False, cfg.gan_mode)
        loss_d_real = gan_loss(pred_real, True, cfg.gan_mode)
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        losses = {"D_real": loss_d_real.item(), "D_fake": loss_d_fake.item()}
        if cfg.lambda_r1 > 0:
            loss_r1 = self.r1_penalty(pred_real, real_b)
            loss_d = loss_d + loss_r1
            losses["D_R1"] = loss_r1.item()
            real_b = real_b.detach()
        ctx.backward(loss_d, "D")
        ctx.optimizer_step(self.optD)

        # 3. generator + heads update
        self.netD.requires_grad_(False)
        loss_g_gan = gan_loss(self.netD(fake_b), True, cfg.gan_mode) * cfg.lambda_gan
        loss_g = loss_g_gan
        losses["G_GAN"] = loss_g_gan.item()
        if cfg.lambda_nce > 0:
            query_input = fake_all if cfg.nce_idt else fake_b
            query_feats = self.netG.encode(query_input, cfg.nce_layers)
            if flipped:
                query_feats = [q.flip(3) for q in query_feats]
            loss_nce = self.nce_loss([q[:n] for q in query_feats], [k[:n] for k in real_feats], gen)
            losses["NCE"] = loss_nce.item()
            if cfg.nce_idt:
                loss_nce_y = self.nce_loss([q[n:] for q in query_feats], [k[n:] for k in real_feats], gen)
                losses["NCE_Y"] = loss_nce_y.item()
                loss_nce = 0.5 * (loss_nce + loss_nce_y)
            loss_g = loss_g + loss_nce
        if cfg.lambda_identity > 0 and idt_b is not None:
            target = real_b.flip(3) if flipped else real_b
            loss_idt = F.l1_loss(idt_b, target) * cfg.lambda_identity
            losses["idt"] = loss_idt.item()
            loss_g = loss_g + loss_idt
        ctx.backward(loss_g, "G")
        ctx.optimizer_step(self.optG)
        ctx.optimizer_step(self.optF)
        self.netD.requires_grad_(True)
        return losses

    # -- inference and samples ---------------------------------------------------------------------------
    @torch.no_grad()
    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """G applied to a batch (B, 3, H, W) in [-1, 1] whose sides are multiples of 4 (ResNet) or of
        ``2 ** stylegan2_downsampling`` (StyleGAN2, with its fixed inference noise)."""
        device = next(self.netG.parameters()).device
        return self.netG(self._prepare(x, device)).float()

    @torch.no_grad()
    def sample_grid(
        self, batch: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator
    ) -> Image.Image:
        """One row per item: input A | G(A) | a real B image."""
        real_a, real_b = batch
        fake_b = self.translate_tensor(real_a).cpu()
        rows = [torch.cat([a, f, b], dim=2) for a, f, b in zip(real_a, fake_b, real_b)]
        return tensor_to_pil(torch.cat(rows, dim=1))
