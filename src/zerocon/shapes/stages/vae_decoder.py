"""Fine-tuning of the ShapesWorld VAE's decoder alone, after the UNet learned the VAE's latent space."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zerocon.shapes.stage import Stage, StageConfig, render_splits, save_atomic, train_stage
from zerocon.shapes.stages.vae import vae_psnr, vae_psnrs


@dataclass
class VaeDecoderConfig(StageConfig):
    vae_dir: str = ""
    """Folder of the VAE to fine-tune (default RUN/vae/model)."""
    batch_size: int = 8
    lr: float = 3e-4


class VaeDecoderStage(Stage):
    """Fine-tune only the decoder (+ post_quant_conv) on full scenes; the encoder and scaling stay fixed."""

    name = "vae_decoder"
    supports_device = True

    def __init__(self, run: Path, cfg: VaeDecoderConfig, gen: torch.Generator) -> None:
        from diffusers import AutoencoderKL

        super().__init__(run, cfg, gen)
        self.vae = AutoencoderKL.from_pretrained(Path(cfg.vae_dir or run / "vae" / "model")).to(cfg.device)
        self.vae.requires_grad_(False)
        self.params = [*self.vae.decoder.parameters(), *self.vae.post_quant_conv.parameters()]
        for p in self.params:
            p.requires_grad_(True)
        self.data, self.val_seen, self.val_unseen = render_splits(cfg)

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.params

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.data.as_float(idx).to(self.vae.device)
        with torch.no_grad():
            post = self.vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=self.gen).to(self.vae.device)
        rec = self.vae.decode(z).sample
        return F.l1_loss(rec, x) + F.mse_loss(rec, x)

    def initial_row(self) -> dict[str, Any]:
        """The PSNR of the VAE as it came, the baseline of the fine-tuning."""
        return self.evaluate()

    def evaluate(self) -> dict[str, Any]:
        return vae_psnrs(self.vae, self.val_seen, self.val_unseen)

    def save(self) -> None:
        save_atomic(self.out / "model", self.vae.save_pretrained)

    def final_metrics(self) -> dict[str, Any]:
        return {
            "psnr_val_seen": vae_psnr(self.vae, self.val_seen),
            "psnr_val_heldout": vae_psnr(self.vae, self.val_unseen),
        }


def train_vae_decoder(run_dir: str | os.PathLike, cfg: VaeDecoderConfig) -> dict:
    """Fine-tune the decoder of ``vae_dir`` into ``RUN/vae_decoder``."""
    return train_stage(VaeDecoderStage, run_dir, cfg)
