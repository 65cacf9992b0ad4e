"""LANIT as a :class:`~zerocon.training.TrainableMethod`: configuration, one training step, sample grids.

One step follows LANIT / StarGAN v2: (1) a discriminator step against latent-guided fakes, (2) one against
reference-guided fakes, (3) a generator step on the latent pass updating G, the mapping network F and the
style encoder E (and, once prompt learning has started, the prompt contexts through the domain-regularisation
loss), (4) a generator step on the reference pass updating G only, (5) the EMA update. Pseudo-labels of the
source and reference images are recomputed every step from the current prompts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.lanit import losses as L
from zerocon.lanit.labels import LabelConfig, pseudo_labels
from zerocon.lanit.networks import NetworkConfig, build_networks
from zerocon.lanit.prompts import ClipBundle, PromptLearner, encode_images, load_clip, resolve_templates
from zerocon.lanit.sampling import latent_grid
from zerocon.training import StepContext, TrainableMethod, moving_average


@dataclass
class LanitConfig:
    """Everything that defines a LANIT model and its training; defaults are LANIT's (CVPR 2023 code)."""

    domains: list[str] = field(default_factory=list)
    """The candidate domain words ("blond hair", "tabby cat", ...)."""
    templates: str | list[str] = "photo"
    """A preset of :data:`zerocon.lanit.prompts.TEMPLATES` or templates with "{}"."""
    clip: str = "openai/clip-vit-base-patch32"
    """CLIP used for the pseudo-labels: hub id, local folder, or ``shapes-clip`` (bundled)."""
    preset: str = "default"
    img_size: int = 256
    base_dim: int | None = None
    """Generator/encoder base width; ``None`` = 2**14 // img_size (StarGAN v2)."""
    max_conv_dim: int = 512
    mapping_dim: int = 512
    style_dim: int = 64
    latent_dim: int = 16
    output_norm: bool = True
    """Instance norm before the generator's ``to_rgb`` (StarGAN v2); see :class:`NetworkConfig`."""
    top_k: int | None = None
    """Keep at most k domains per image (``None``: every domain above the base prompt)."""
    empty: str = "skip"
    """Images with no domain on: ``skip`` them or give them a ``slack`` domain."""
    lr: float = 1e-4
    """Adam learning rate of G, E and D."""
    mapping_lr: float = 1e-4
    """Learning rate of the mapping network (LANIT 1e-4; StarGAN v2 used 1e-6)."""
    prompt_lr: float = 2e-5
    """Learning rate of the prompt contexts (LANIT's default; its step-2 script uses 1e-6)."""
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    """Adam weight decay of the networks (not of the prompt contexts, which are word embeddings)."""
    lambda_reg: float = 1.0
    """R1 penalty weight."""
    lambda_sty: float = 1.0
    lambda_ds: float = 1.0
    """Initial style-diversity weight, decaying linearly to 0 at ``ds_iter``."""
    ds_iter: int = 130_000
    lambda_cyc: float = 1.0
    lambda_dr: float = 0.5
    """Domain-regularisation weight (LANIT's lambda_p)."""
    prompt_start: int | None = 100_000
    """Step from which prompt contexts are learned and L_dl is applied (LANIT resumes step 2 at 99k); None = never."""
    ema_beta: float = 0.999
    reference_pass: bool = True
    """Also train on reference-guided styles each step (LANIT/StarGAN v2 do); off halves the cost of a step,
    the style encoder then learns only through the latent pass (style reconstruction and cycle)."""
    init_seed: int = 777
    augment: bool = True

    def __post_init__(self) -> None:
        self.domains = list(self.domains)
        if isinstance(self.templates, tuple):
            self.templates = list(self.templates)
        LabelConfig(top_k=self.top_k, empty=self.empty)  # validates

    @property
    def label_config(self) -> LabelConfig:
        return LabelConfig(top_k=self.top_k, empty=self.empty)

    @property
    def num_label_domains(self) -> int:
        return self.label_config.num_label_domains(len(self.domains))

    def network_config(self) -> NetworkConfig:
        return NetworkConfig(
            img_size=self.img_size,
            num_domains=self.num_label_domains,
            style_dim=self.style_dim,
            latent_dim=self.latent_dim,
            base_dim=self.base_dim,
            max_conv_dim=self.max_conv_dim,
            mapping_dim=self.mapping_dim,
            output_norm=self.output_norm,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanitConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # 64-px ShapesWorld on a shared 2-core CPU: narrow networks, latent pass only, a short schedule, prompt
    # learning from step 400, the two best domains above the threshold (one colour + one shape per scene), no
    # instance norm before to_rgb (it hides the input's flat background colour from the output; see
    # benchmarks/generator_identity_fit.py and benchmarks/results/lanit_shapes/output_norm/).
    "shapes": {
        "templates": "shapes",
        "clip": "shapes-clip",
        "img_size": 64,
        "base_dim": 8,
        "max_conv_dim": 64,
        "mapping_dim": 64,
        "style_dim": 32,
        "output_norm": False,
        "ds_iter": 1_000,
        "prompt_start": 400,
        "top_k": 2,
        "empty": "slack",
        "reference_pass": False,
        "ema_beta": 0.99,
        "lr": 2e-4,
        "mapping_lr": 2e-4,
        "prompt_lr": 1e-3,
    },
}
"""Named presets: overrides of :class:`LanitConfig` defaults."""


def make_config(preset: str = "default", **overrides: Any) -> LanitConfig:
    """A :class:`LanitConfig` from a preset plus explicit overrides (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise ZeroconError(f"unknown LANIT preset {preset!r} (choose from {', '.join(PRESETS)})")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}, "preset": preset}
    return LanitConfig(**values)


def _adam(params, lr: float, cfg: LanitConfig, weight_decay: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=weight_decay)


class LanitMethod(TrainableMethod):
    """LANIT networks, prompts, optimizers and the training step."""

    def __init__(self, cfg: LanitConfig, clip: ClipBundle | None = None) -> None:
        if not cfg.domains:
            raise ZeroconError("LANIT needs domain words (--domains)")
        self.cfg = cfg
        self.clip = clip if clip is not None else load_clip(cfg.clip)
        self.templates = resolve_templates(cfg.templates)
        nets = build_networks(cfg.network_config(), seed=cfg.init_seed)
        self.generator, self.mapping = nets.generator, nets.mapping
        self.style_encoder, self.discriminator = nets.style_encoder, nets.discriminator
        self.generator_ema, self.mapping_ema = nets.generator_ema, nets.mapping_ema
        self.style_encoder_ema = nets.style_encoder_ema
        self.prompts = PromptLearner(self.clip, self.templates, cfg.domains)
        self.prompts_ema = copy.deepcopy(self.prompts).requires_grad_(False)
        wd = cfg.weight_decay
        self._optimizers = {
            "generator": _adam(self.generator.parameters(), cfg.lr, cfg, wd),
            "mapping": _adam(self.mapping.parameters(), cfg.mapping_lr, cfg, wd),
            "style_encoder": _adam(self.style_encoder.parameters(), cfg.lr, cfg, wd),
            "discriminator": _adam(self.discriminator.parameters(), cfg.lr, cfg, wd),
            "prompts": _adam(self.prompts.parameters(), cfg.prompt_lr, cfg, 0.0),
        }

    # -- TrainableMethod ---------------------------------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        return {
            "generator": self.generator,
            "mapping": self.mapping,
            "style_encoder": self.style_encoder,
            "discriminator": self.discriminator,
            "generator_ema": self.generator_ema,
            "mapping_ema": self.mapping_ema,
            "style_encoder_ema": self.style_encoder_ema,
            "prompts": self.prompts,
            "prompts_ema": self.prompts_ema,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers

    def config(self) -> dict[str, Any]:
        return {"method": "lanit", **asdict(self.cfg)}

    def to(self, device: torch.device) -> LanitMethod:
        super().to(device)
        self.clip.to(device)
        return self

    def collate(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    # -- labels ------------------------------------------------------------------------------------------
    def labels(self, images: torch.Tensor, ema: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo multi-hot labels and validity mask of real images with the current (or EMA) prompts."""
        prompts = self.prompts_ema if ema else self.prompts
        with torch.no_grad():
            domain, base = prompts.features(self.clip, trainable=False)
            feats = encode_images(self.clip, images)
        return pseudo_labels(feats, domain, base, self.cfg.label_config)

    def prompt_learning(self, step: int) -> bool:
        return self.cfg.prompt_start is not None and step >= self.cfg.prompt_start

    def _zero_grad(self) -> None:
        for optimizer in self._optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def flip_for_regularization(
        self, y_trg: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d_inv: y_trg with one active *word* domain turned off (the slack domain takes over an emptied row)."""
        n = len(self.cfg.domains)
        flipped_words, k = L.flip_one_active(y_trg[:, :n], generator)
        if y_trg.shape[1] == n:
            return flipped_words, k
        slack = torch.maximum(y_trg[:, n:], (flipped_words.sum(1, keepdim=True) == 0).to(y_trg.dtype))
        return torch.cat([flipped_words, slack], dim=1), k

    def domain_regularization(
        self, x_fake: torch.Tensor, z: torch.Tensor, y_trg: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """L_dl with the paper's flipped label: ŷ' = G(ŷ, F(z, d_inv)); needs gradients to prompts and G."""
        y_inv, k = self.flip_for_regularization(y_trg, generator)
        x_ablated = self.generator(x_fake, self.mapping(z, y_inv))
        domain, base = self.prompts.features(self.clip, trainable=True)
        scale = self.clip.logit_scale
        p_fake = L.domain_probability(encode_images(self.clip, x_fake), domain, base, scale)
        p_ablated = L.domain_probability(encode_images(self.clip, x_ablated), domain, base, scale)
        return L.domain_regularization_loss(p_fake, p_ablated, k.to(p_fake.device))

    # -- the step ----------------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        cfg, g, device = self.cfg, ctx.generator, ctx.device
        x, ref, ref2 = (batch[k].to(device) for k in ("x", "ref", "ref2"))
        y_both, valid = self.labels(torch.cat([x, ref]))
        y_org, y_trg = y_both.chunk(2)
        keep = valid[: len(x)] & valid[len(x) :]
        if not bool(keep.any()):
            return {"kept": 0.0}
        x, ref, ref2, y_org, y_trg = x[keep], ref[keep], ref2[keep], y_org[keep], y_trg[keep]
        b = len(x)
        z1 = torch.randn(b, cfg.latent_dim, generator=g).to(device)
        z2 = torch.randn(b, cfg.latent_dim, generator=g).to(device)
        G, Fm, E, D = self.generator, self.mapping, self.style_encoder, self.discriminator
        opt = self._optimizers
        out: dict[str, float] = {"kept": float(keep.float().mean()), "domains_on": float(y_org.sum(1).mean())}

        # 1-2. discriminator, against latent-guided then reference-guided fakes
        passes = [("latent", lambda: Fm(z1, y_trg)), ("ref", lambda: E(ref, y_trg))]
        passes = passes if cfg.reference_pass else passes[:1]
        for name, style_fn in passes:
            real = x.detach().requires_grad_(True)
            logits_real = D(real)
            loss_real = L.adversarial_loss(logits_real, y_org, 1.0)
            loss_r1 = L.r1_penalty(logits_real, y_org, real)
            with torch.no_grad():
                fake = G(x, style_fn())
            loss_fake = L.adversarial_loss(D(fake), y_trg, 0.0)
            d_loss = loss_real + loss_fake + cfg.lambda_reg * loss_r1
            self._zero_grad()
            ctx.backward(d_loss, f"d_{name}")
            ctx.optimizer_step(opt["discriminator"])
            out[f"d_{name}"] = float(d_loss.detach())
            if name == "latent":
                out["d_real"], out["d_fake"], out["d_r1"] = (
                    float(loss_real.detach()),
                    float(loss_fake.detach()),
                    float(loss_r1.detach()),
                )

        # 3-4. generator: latent pass (G, F, E, prompts) then reference pass (G only)
        lambda_ds = L.diversity_weight(ctx.step, cfg.lambda_ds, cfg.ds_iter)
        for name in ("latent", "ref") if cfg.reference_pass else ("latent",):
            if name == "latent":
                s_trg, s_trg2 = Fm(z1, y_trg), Fm(z2, y_trg)
            else:
                s_trg, s_trg2 = E(ref, y_trg), E(ref2, y_trg)
            fake = G(x, s_trg)
            adv = L.adversarial_loss(D(fake), y_trg, 1.0)
            sty = L.style_reconstruction_loss(E(fake, y_trg), s_trg)
            ds = L.diversity_loss(fake, G(x, s_trg2).detach())
            cyc = L.cycle_loss(G(fake, E(x, y_org)), x)
            g_loss = adv + cfg.lambda_sty * sty - lambda_ds * ds + cfg.lambda_cyc * cyc
            learn_prompts = name == "latent" and self.prompt_learning(ctx.step)
            if learn_prompts:
                dr = self.domain_regularization(fake, z1, y_trg, g)
                g_loss = g_loss + cfg.lambda_dr * dr
                out["g_dr"] = float(dr.detach())
            self._zero_grad()
            ctx.backward(g_loss, f"g_{name}")
            ctx.optimizer_step(opt["generator"])
            if name == "latent":
                ctx.optimizer_step(opt["mapping"])
                ctx.optimizer_step(opt["style_encoder"])
                if learn_prompts:
                    ctx.optimizer_step(opt["prompts"])
                out.update(
                    g_adv=float(adv.detach()),
                    g_sty=float(sty.detach()),
                    g_ds=float(ds.detach()),
                    g_cyc=float(cyc.detach()),
                )
            out[f"g_{name}"] = float(g_loss.detach())
        self._zero_grad()

        # 5. moving averages
        moving_average(G, self.generator_ema, cfg.ema_beta)
        moving_average(Fm, self.mapping_ema, cfg.ema_beta)
        moving_average(E, self.style_encoder_ema, cfg.ema_beta)
        if self.prompt_learning(ctx.step):
            moving_average(self.prompts, self.prompts_ema, cfg.ema_beta)
        return out

    # -- samples -----------------------------------------------------------------------------------------
    def sample_grid(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> Image.Image:
        device = next(self.generator_ema.parameters()).device
        return latent_grid(
            self.generator_ema,
            self.mapping_ema,
            batch["x"].to(device),
            self.cfg.domains,
            self.cfg.num_label_domains,
            self.cfg.latent_dim,
            generator,
        )
