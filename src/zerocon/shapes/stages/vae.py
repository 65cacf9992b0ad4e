"""The ShapesWorld VAE (diffusers ``AutoencoderKL``): reconstruction training and its PSNR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zerocon.shapes.data import SceneBatch
from zerocon.shapes.stage import Stage, StageConfig, render_splits, save_atomic, train_stage


@dataclass
class VaeConfig(StageConfig):
    channels: tuple[int, ...] = (16, 32, 64)
    """block_out_channels: n blocks downsample by 2 ** (n - 1), so three blocks give 64x64 -> 16x16 and
    four give 8x8 (Stable Diffusion's factor 8)."""
    latent_channels: int = 4
    """Channels of the latent grid."""
    crop: int = 32
    """Train on random crops of this side (the network is convolutional; 4x cheaper than full scenes)."""
    kl_weight: float = 1e-6
    """Weight of the posterior's KL divergence from N(0, 1) next to the L1 + MSE reconstruction loss."""
    batch_size: int = 16
    init_from: str = ""
    """Continue from this AutoencoderKL folder instead of a fresh model."""
    n_scale: int = 256
    """Training scenes used to measure the latent std for ``scaling_factor``."""


def build_vae(cfg: VaeConfig) -> Any:
    from diffusers import AutoencoderKL

    n = len(cfg.channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=8,
        sample_size=64,
        mid_block_add_attention=False,
    )


def vae_factor(vae: Any) -> int:
    """Pixels per latent cell along a side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (computed on the [0, 1] scale)."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def vae_psnr(vae: Any, batch: SceneBatch, chunk: int = 64) -> float:
    """Mean reconstruction PSNR (dB) of ``batch`` through the posterior mode."""
    vae.eval()
    values = []
    for i in range(0, len(batch), chunk):
        x = batch.as_float(slice(i, i + chunk)).to(vae.device)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
        values.append(psnr(rec, x).cpu())
    vae.train()
    return torch.cat(values).mean().item()


def vae_psnrs(vae: Any, val_seen: SceneBatch, val_unseen: SceneBatch) -> dict[str, float]:
    """PSNR on both validation splits, as the curves record it."""
    return {"psnr_seen": vae_psnr(vae, val_seen), "psnr_heldout": vae_psnr(vae, val_unseen)}


@torch.no_grad()
def latent_std(vae: Any, batch: SceneBatch, chunk: int = 64) -> float:
    """Standard deviation of the posterior modes of ``batch`` (leaves the VAE in eval mode)."""
    vae.eval()
    lat = torch.cat(
        [
            vae.encode(batch.as_float(slice(i, i + chunk)).to(vae.device)).latent_dist.mode()
            for i in range(0, len(batch), chunk)
        ]
    )
    return lat.std().item()


def _save_vae(out: Path, vae: Any, data: SceneBatch, n_scale: int) -> None:
    """Set ``scaling_factor`` to 1 / latent std of the first ``n_scale`` scenes, then save atomically."""
    vae.register_to_config(scaling_factor=1.0 / latent_std(vae, data.subset(n_scale)))
    vae.train()
    save_atomic(out, vae.save_pretrained)


class VaeStage(Stage):
    """Reconstruction (L1 + MSE) with a small KL term on random crops; ``scaling_factor`` = 1 / latent std."""

    name = "vae"
    supports_device = True

    def __init__(self, run: Path, cfg: VaeConfig, gen: torch.Generator) -> None:
        super().__init__(run, cfg, gen)
        if cfg.init_from:
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(cfg.init_from)
        else:
            self.vae = build_vae(cfg)
        self.vae.to(cfg.device)
        self.data, self.val_seen, self.val_unseen = render_splits(cfg)

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.vae.parameters())

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        cfg, vae = self.cfg, self.vae
        x = self.data.as_float(idx).to(vae.device)
        if cfg.crop < 64:
            # offsets are whole latent cells, so a crop stays aligned with the latent grid
            f = vae_factor(vae)
            oy, ox = (
                int(v) for v in torch.randint(0, (64 - cfg.crop) // f + 1, (2,), generator=self.gen) * f
            )
            x = x[:, :, oy : oy + cfg.crop, ox : ox + cfg.crop]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=self.gen).to(vae.device)
        rec = vae.decode(z).sample
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.kl_weight * post.kl().mean()

    def evaluate(self) -> dict[str, Any]:
        return vae_psnrs(self.vae, self.val_seen, self.val_unseen)

    def save(self) -> None:
        _save_vae(self.out / "model", self.vae, self.data, self.cfg.n_scale)

    def final_metrics(self) -> dict[str, Any]:
        return {
            "psnr_val_seen": vae_psnr(self.vae, self.val_seen),
            "psnr_val_heldout": vae_psnr(self.vae, self.val_unseen),
            "scaling_factor": self.vae.config.scaling_factor,
        }


def train_vae(run_dir: str | os.PathLike, cfg: VaeConfig) -> dict:
    """Train the VAE into ``RUN/vae``."""
    return train_stage(VaeStage, run_dir, cfg)
