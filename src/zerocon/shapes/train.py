"""Training of the ShapesWorld models: CLIP, AutoencoderKL, text-conditioned UNet, BLIP captioner.

Each stage is a function ``train_<stage>(run_dir, config)`` that trains one model of the same architecture
as the real one (transformers ``CLIPModel`` / ``BlipForConditionalGeneration``, diffusers ``AutoencoderKL`` /
``UNet2DConditionModel``) at a size that fits a shared 2-core CPU, writes ``RUN/<stage>/`` with
``save_pretrained`` every ``save_every`` steps (so a partial result always exists), appends
``{"step", "seconds", ...metrics}`` lines to ``RUN/<stage>/curve.jsonl`` and finally ``metrics.json``.

A stage stops after ``steps`` optimisation steps or ``max_minutes`` of wall clock, whichever comes first;
the metrics say how many steps were done. All randomness comes from ``seed`` (model init through
``torch.manual_seed``, data order and noise through ``torch.Generator``), so the same command with the same
seed and step count gives the same metrics on the same machine.

Order: ``clip`` and ``vae`` first; ``unet`` needs both (frozen text encoder and VAE encoder);
``vae_decoder`` then fine-tunes only the VAE decoder (the latent space the UNet learned stays fixed);
``blip`` is independent.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zerocon.errors import ZeroconError
from zerocon.io import write_json
from zerocon.shapes.data import HELD_OUT_CAPTIONS, TRAIN_CAPTIONS, SceneBatch, train_split, val_split
from zerocon.shapes.world import BACKGROUND_COLORS, OBJECT_COLORS, SHAPES, all_captions, parse_caption

STAGES = ("clip", "vae", "unet", "vae_decoder", "blip")


@dataclass
class StageConfig:
    """Settings shared by every stage."""

    steps: int = 1000
    """Maximum number of optimisation steps."""
    max_minutes: float = 0.0
    """Stop after this much wall clock (0 = no limit); metrics record the steps actually done."""
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    n_train: int = 6000
    """Training scenes rendered once at the start (held-out captions excluded)."""
    n_val: int = 128
    """Validation scenes per split (seen captions / held-out captions)."""
    eval_every: int = 200
    save_every: int = 200
    threads: int = 1
    """torch threads (1 when two jobs share the 2 cores)."""


@dataclass
class ClipConfig(StageConfig):
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 8
    projection_dim: int = 64
    batch_size: int = 64
    init_from: str = ""
    """Continue from this CLIP folder instead of a fresh model (tokenizer taken from there too)."""
    new_vision: bool = False
    """With ``init_from``: keep its text tower and projection but build a fresh vision tower from this
    config's ``hidden`` / ``layers`` / ``heads`` / ``patch`` (e.g. finer patches)."""
    vision_layers: int = 0
    """Layers of the vision tower (0 = ``layers``)."""
    freeze_text: bool = False
    """Train only the vision tower, its projection and the temperature: the text encoder's hidden states
    (the UNet's conditioning) stay exactly as they were."""


@dataclass
class VaeConfig(StageConfig):
    channels: tuple[int, ...] = (16, 32, 64)
    """block_out_channels: n blocks downsample by 2 ** (n - 1), so three blocks give 64x64 -> 16x16 and
    four give 8x8 (Stable Diffusion's factor 8)."""
    latent_channels: int = 4
    crop: int = 32
    """Train on random crops of this side (the network is convolutional; 4x cheaper than full scenes)."""
    kl_weight: float = 1e-6
    batch_size: int = 16
    init_from: str = ""
    """Continue from this AutoencoderKL folder instead of a fresh model."""
    n_scale: int = 256
    """Training scenes used to measure the latent std for ``scaling_factor``."""


@dataclass
class UnetConfig(StageConfig):
    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    heads: int = 2
    """Attention heads of every transformer block (diffusers reads this from ``attention_head_dim``, a
    historical misnomer: with 32 channels and 8 "head dims" one gets 8 heads of 4 channels, which is slow on
    a CPU and no better)."""
    noise_offset: float = 0.0
    """Offset noise (Guttenberg 2023): add ``noise_offset`` x N(0, 1) per sample and channel to the training
    noise. Stable Diffusion's schedule keeps some signal at the last timestep (alpha_bar 0.0047), so a model
    trained without it reads an image's mean colour from the noise and generates random backgrounds."""
    snr_gamma: float = 5.0
    """Min-SNR-gamma loss weighting (Hang et al. 2023; 0 = plain MSE): faster convergence."""
    cond_drop: float = 0.1
    """Probability of the empty caption (classifier-free guidance)."""
    ema_decay: float = 0.999
    eval_samples: int = 32
    eval_steps: int = 25
    """DDIM steps of the periodic evaluation (the final evaluation uses ``final_eval_steps``)."""
    final_eval_samples: int = 96
    final_eval_steps: int = 50
    guidance_scale: float = 4.0
    clip_dir: str = ""
    """Folder of the trained CLIP (default RUN/clip), or a pipeline folder whose text encoder to use."""
    vae_dir: str = ""
    """Folder of the trained VAE (default RUN/vae); its latent channels and grid shape the UNet."""
    init_from: str = ""
    """Continue from this UNet folder (its weights start both the trained and the EMA copy)."""


@dataclass
class VaeDecoderConfig(StageConfig):
    vae_dir: str = ""
    batch_size: int = 8
    lr: float = 3e-4


@dataclass
class BlipConfig(StageConfig):
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 8
    batch_size: int = 32
    vision_layers: int = 0
    """Layers of the vision tower (0 = ``layers``)."""
    init_vision_from: str = ""
    """A CLIP folder whose vision tower starts BLIP's (as BLIP starts from a pre-trained ViT); its hidden
    size, patch and layer count must match ``hidden``, ``patch`` and the vision layers."""
    init_from: str = ""
    """Continue from this BlipForConditionalGeneration folder (its own architecture; ``init_vision_from``
    and the size settings are then ignored)."""


CONFIGS: dict[str, type[StageConfig]] = {
    "clip": ClipConfig,
    "vae": VaeConfig,
    "unet": UnetConfig,
    "vae_decoder": VaeDecoderConfig,
    "blip": BlipConfig,
}


# ---------------------------------------------------------------------------------------------- helpers
class _Log:
    """Curve file + stopwatch + time budget of one stage."""

    def __init__(self, out: Path, cfg: StageConfig) -> None:
        self.out = out
        self.cfg = cfg
        self.start = time.time()
        out.mkdir(parents=True, exist_ok=True)
        self.curve = out / "curve.jsonl"
        self.curve.write_text("")

    def seconds(self) -> float:
        return time.time() - self.start

    def out_of_time(self) -> bool:
        return self.cfg.max_minutes > 0 and self.seconds() > 60 * self.cfg.max_minutes

    def write(self, step: int, **values: Any) -> None:
        row = {"step": step, "seconds": round(self.seconds(), 1), **values}
        with open(self.curve, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def _setup(cfg: StageConfig) -> torch.Generator:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    return torch.Generator().manual_seed(cfg.seed)


def _lr_lambda(cfg: StageConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, cfg.steps))))

    return f


def _save_atomic(out: Path, save: Callable[[Path], None]) -> None:
    """Write a ``save_pretrained`` folder to ``out`` via a temporary sibling swapped into place."""
    from zerocon.io import staged_folder

    with staged_folder(out) as staging:
        save(staging)


def _optimise(
    loss: torch.Tensor, opt: torch.optim.Optimizer, sched: Any, max_grad_norm: float | None = 1.0
) -> None:
    """One optimiser step on ``loss``, gradients of ``opt``'s parameters clipped to ``max_grad_norm``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(
            [q for group in opt.param_groups for q in group["params"]], max_grad_norm
        )
    opt.step()
    sched.step()


def _vae_psnrs(vae: Any, val_seen: SceneBatch, val_unseen: SceneBatch) -> dict[str, float]:
    return {"psnr_seen": vae_psnr(vae, val_seen), "psnr_heldout": vae_psnr(vae, val_unseen)}


def _batches(n: int, batch_size: int, gen: torch.Generator):
    """Endless shuffled index batches over ``range(n)`` drawn from ``gen``."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i : i + batch_size]


def _finish(out: Path, cfg: StageConfig, stage: str, step: int, log: _Log, metrics: dict[str, Any]) -> dict:
    import sys

    argv = sys.argv[1:] if Path(sys.argv[0]).name == "zerocon" else None
    result = {
        "stage": stage,
        "command": " ".join(["zerocon", *argv]) if argv else None,
        "steps_done": step,
        "seconds": round(log.seconds(), 1),
        "config": asdict(cfg),
        "metrics": metrics,
    }
    write_json(out / "metrics.json", result)
    return result


# --------------------------------------------------------------------------------------------------- CLIP
CLIP_MEAN = [0.5, 0.5, 0.5]
CLIP_STD = [0.5, 0.5, 0.5]


def build_clip(cfg: ClipConfig, tokenizer: Any) -> Any:
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=2 * cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=cfg.hidden,
        intermediate_size=2 * cfg.hidden,
        num_hidden_layers=cfg.vision_layers or cfg.layers,
        num_attention_heads=cfg.heads,
        image_size=64,
        patch_size=cfg.patch,
    )
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim))


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output from ``get_*_features``; older versions a tensor."""
    return output if torch.is_tensor(output) else output.pooler_output


def tokenize(tokenizer: Any, captions: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Token ids padded to the tokenizer's full length, as diffusers pipelines encode prompts."""
    return tokenizer(
        list(captions), padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids


@torch.no_grad()
def clip_zero_shot(model: Any, tokenizer: Any, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Zero-shot attributes of ``images`` ((N,3,64,64) in [-1,1]): the attributes of the best-matching
    caption among all captions of the world. Returns index tensors for shape, colour, background."""
    captions = all_captions()
    text = F.normalize(_features(model.get_text_features(input_ids=tokenize(tokenizer, captions))), dim=-1)
    img = F.normalize(_features(model.get_image_features(pixel_values=images)), dim=-1)
    best = (img @ text.T).argmax(-1)
    parsed = [parse_caption(captions[i]) for i in best.tolist()]
    colors, bgs = list(OBJECT_COLORS), list(BACKGROUND_COLORS)
    return {
        "shape": torch.tensor([SHAPES.index(p["shape"]) for p in parsed]),
        "color": torch.tensor([colors.index(p["color"]) for p in parsed]),
        "background": torch.tensor([bgs.index(p["background"]) for p in parsed]),
    }


def clip_accuracy(model: Any, tokenizer: Any, batch: SceneBatch) -> dict[str, float]:
    model.eval()
    pred = clip_zero_shot(model, tokenizer, batch.as_float())
    model.train()
    return {
        "shape_acc": (pred["shape"] == batch.shape_idx).float().mean().item(),
        "color_acc": (pred["color"] == batch.color_idx).float().mean().item(),
        "background_acc": (pred["background"] == batch.background_idx).float().mean().item(),
    }


def save_clip(out: Path, model: Any, tokenizer: Any) -> None:
    from transformers import CLIPImageProcessor, CLIPProcessor

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        processor = CLIPProcessor(
            image_processor=CLIPImageProcessor(
                size={"shortest_edge": 64},
                crop_size={"height": 64, "width": 64},
                image_mean=CLIP_MEAN,
                image_std=CLIP_STD,
            ),
            tokenizer=tokenizer,
        )
        processor.save_pretrained(folder)

    _save_atomic(out, save)


def train_clip(run_dir: str | os.PathLike, cfg: ClipConfig) -> dict:
    """Contrastive (scene, caption) training: image->caption over all training captions, caption->image
    over the batch with every image of that caption a positive (captions repeat within a batch)."""
    from zerocon.shapes.tokenizers import build_clip_tokenizer

    run = Path(run_dir)
    out = run / ("clip_vision" if cfg.freeze_text else "clip")
    gen = _setup(cfg)
    if cfg.init_from:
        from transformers import CLIPModel, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(cfg.init_from)
        model = CLIPModel.from_pretrained(cfg.init_from)
        if cfg.new_vision:
            fresh = build_clip(cfg, tokenizer)
            fresh.text_model.load_state_dict(model.text_model.state_dict())
            fresh.text_projection.load_state_dict(model.text_projection.state_dict())
            model = fresh
    else:
        tokenizer = build_clip_tokenizer(run / "clip_tokenizer_src")
        model = build_clip(cfg, tokenizer)
    if cfg.freeze_text:
        model.text_model.requires_grad_(False)
        model.text_projection.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    data = train_split(cfg.n_train)
    val_seen, val_unseen = val_split(cfg.n_val, held_out=False), val_split(cfg.n_val, held_out=True)
    all_caps = all_captions()
    train_caps = list(TRAIN_CAPTIONS)
    cap_to_train = torch.full((len(all_caps),), -1, dtype=torch.long)
    for j, c in enumerate(train_caps):
        cap_to_train[all_caps.index(c)] = j
    ids = tokenize(tokenizer, train_caps)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    log = _Log(out, cfg)
    step = 0
    for idx in _batches(len(data), cfg.batch_size, gen):
        if step >= cfg.steps or log.out_of_time():
            break
        images = data.as_float(idx)
        target = cap_to_train[data.caption_idx[idx]]
        img = F.normalize(_features(model.get_image_features(pixel_values=images)), dim=-1)
        txt = F.normalize(_features(model.get_text_features(input_ids=ids)), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        logits = scale * img @ txt.T  # (B, C)
        loss_i2t = F.cross_entropy(logits, target)
        present = target.unique()
        t2i = logits[:, present].T  # (P, B)
        positive = target[None, :] == present[:, None]
        loss_t2i = (t2i.logsumexp(-1) - t2i.masked_fill(~positive, -1e9).logsumexp(-1)).mean()
        loss = 0.5 * (loss_i2t + loss_t2i)
        _optimise(loss, opt, sched, max_grad_norm=None)
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            seen = clip_accuracy(model, tokenizer, val_seen)
            unseen = clip_accuracy(model, tokenizer, val_unseen)
            log.write(
                step,
                loss=loss.item(),
                **{f"seen_{k}": v for k, v in seen.items()},
                **{f"heldout_{k}": v for k, v in unseen.items()},
            )
        if step % cfg.save_every == 0:
            save_clip(out / "model", model, tokenizer)
    save_clip(out / "model", model, tokenizer)
    metrics = {
        "val_seen_captions": clip_accuracy(model, tokenizer, val_seen),
        "val_heldout_captions": clip_accuracy(model, tokenizer, val_unseen),
    }
    return _finish(out, cfg, "clip", step, log, metrics)


# ---------------------------------------------------------------------------------------------------- VAE
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
        x = batch.as_float(slice(i, i + chunk))
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
        values.append(psnr(rec, x))
    vae.train()
    return torch.cat(values).mean().item()


@torch.no_grad()
def latent_std(vae: Any, batch: SceneBatch, chunk: int = 64) -> float:
    vae.eval()
    lat = torch.cat(
        [
            vae.encode(batch.as_float(slice(i, i + chunk))).latent_dist.mode()
            for i in range(0, len(batch), chunk)
        ]
    )
    return lat.std().item()


def _save_vae(out: Path, vae: Any, data: SceneBatch, n_scale: int) -> None:
    vae.register_to_config(scaling_factor=1.0 / latent_std(vae, data.subset(n_scale)))
    vae.train()
    _save_atomic(out, vae.save_pretrained)


def train_vae(run_dir: str | os.PathLike, cfg: VaeConfig) -> dict:
    """Reconstruction (L1 + MSE) with a small KL term on random crops; ``scaling_factor`` = 1 / latent std."""
    run = Path(run_dir)
    out = run / "vae"
    gen = _setup(cfg)
    if cfg.init_from:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(cfg.init_from)
    else:
        vae = build_vae(cfg)
    data = train_split(cfg.n_train)
    val_seen, val_unseen = val_split(cfg.n_val, held_out=False), val_split(cfg.n_val, held_out=True)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    log = _Log(out, cfg)
    step = 0
    for idx in _batches(len(data), cfg.batch_size, gen):
        if step >= cfg.steps or log.out_of_time():
            break
        x = data.as_float(idx)
        if cfg.crop < 64:
            f = vae_factor(vae)
            oy, ox = (int(v) for v in torch.randint(0, (64 - cfg.crop) // f + 1, (2,), generator=gen) * f)
            x = x[:, :, oy : oy + cfg.crop, ox : ox + cfg.crop]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.kl_weight * post.kl().mean()
        _optimise(loss, opt, sched)
        step += 1
        if step % cfg.eval_every == 0:
            log.write(step, loss=loss.item(), **_vae_psnrs(vae, val_seen, val_unseen))
        if step % cfg.save_every == 0:
            _save_vae(out / "model", vae, data, cfg.n_scale)
    _save_vae(out / "model", vae, data, cfg.n_scale)
    metrics = {
        "psnr_val_seen": vae_psnr(vae, val_seen),
        "psnr_val_heldout": vae_psnr(vae, val_unseen),
        "scaling_factor": vae.config.scaling_factor,
    }
    log.write(step, **metrics)
    return _finish(out, cfg, "vae", step, log, metrics)


def train_vae_decoder(run_dir: str | os.PathLike, cfg: VaeDecoderConfig) -> dict:
    """Fine-tune only the decoder (+ post_quant_conv) on full scenes; the encoder and scaling stay fixed."""
    from diffusers import AutoencoderKL

    run = Path(run_dir)
    src = Path(cfg.vae_dir or run / "vae" / "model")
    out = run / "vae_decoder"
    gen = _setup(cfg)
    vae = AutoencoderKL.from_pretrained(src)
    vae.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
    data = train_split(cfg.n_train)
    val_seen, val_unseen = val_split(cfg.n_val, held_out=False), val_split(cfg.n_val, held_out=True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    log = _Log(out, cfg)
    log.write(0, **_vae_psnrs(vae, val_seen, val_unseen))
    step = 0
    for idx in _batches(len(data), cfg.batch_size, gen):
        if step >= cfg.steps or log.out_of_time():
            break
        x = data.as_float(idx)
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        _optimise(loss, opt, sched)
        step += 1
        if step % cfg.eval_every == 0:
            log.write(step, loss=loss.item(), **_vae_psnrs(vae, val_seen, val_unseen))
        if step % cfg.save_every == 0:
            _save_atomic(out / "model", vae.save_pretrained)
    _save_atomic(out / "model", vae.save_pretrained)
    metrics = {"psnr_val_seen": vae_psnr(vae, val_seen), "psnr_val_heldout": vae_psnr(vae, val_unseen)}
    log.write(step, **metrics)
    return _finish(out, cfg, "vae_decoder", step, log, metrics)


# --------------------------------------------------------------------------------------------------- UNet
def build_unet(cfg: UnetConfig, cross_attention_dim: int, latent_shape: tuple[int, int] = (4, 16)) -> Any:
    """The UNet for latents of ``latent_shape`` = (channels, side) (the VAE's)."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.channels)
    channels, side = latent_shape
    return UNet2DConditionModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(cfg.channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.heads,
        norm_num_groups=16,
    )


def sd_scheduler_config() -> dict[str, Any]:
    """Stable Diffusion 1.x's noise schedule (scaled-linear betas 0.00085..0.012, epsilon prediction)."""
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


@torch.no_grad()
def encode_text(text_encoder: Any, tokenizer: Any, captions: list[str] | tuple[str, ...]) -> torch.Tensor:
    """(N, L, D) last hidden states of the CLIP text encoder, as a diffusers pipeline computes them."""
    return text_encoder(tokenize(tokenizer, captions))[0]


@torch.no_grad()
def generate(
    unet: Any,
    vae: Any,
    text_encoder: Any,
    tokenizer: Any,
    captions: list[str],
    steps: int = 50,
    guidance_scale: float = 4.0,
    seed: int = 0,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """Text-to-image with DDIM and classifier-free guidance; returns (N, 3, 64, 64) in [-1, 1]. The initial
    noise is drawn from ``seed`` unless ``latents`` gives it."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**sd_scheduler_config())
    sched.set_timesteps(steps)
    cond = encode_text(text_encoder, tokenizer, captions)
    uncond = encode_text(text_encoder, tokenizer, [""] * len(captions))
    if latents is None:
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        latents = torch.randn((len(captions), *shape), generator=torch.Generator().manual_seed(seed))
    for t in sched.timesteps:
        eps = unet(torch.cat([latents, latents]), t, torch.cat([uncond, cond])).sample
        e_u, e_c = eps.chunk(2)
        latents = sched.step(e_u + guidance_scale * (e_c - e_u), t, latents).prev_sample
    return vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)


def oracle_agreement(images: torch.Tensor, captions: list[str]) -> dict[str, float]:
    """Fraction of images the oracle finds with the caption's shape, colour, both, and background."""
    from zerocon.shapes.oracle import read_scene

    hits = {"shape": 0, "color": 0, "shape_and_color": 0, "background": 0}
    for img, cap in zip(images, captions):
        want = parse_caption(cap)
        got = read_scene(((img.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
        hits["shape"] += got.shape == want["shape"]
        hits["color"] += got.color == want["color"]
        hits["shape_and_color"] += got.shape == want["shape"] and got.color == want["color"]
        hits["background"] += got.background == want["background"]
    return {k: v / len(captions) for k, v in hits.items()}


def _eval_captions(n: int, held_out: bool) -> list[str]:
    pool = HELD_OUT_CAPTIONS if held_out else TRAIN_CAPTIONS
    step = max(1, len(pool) // n) if not held_out else 1
    return [pool[(i * step) % len(pool)] for i in range(n)]


def load_text_encoder(folder: str | os.PathLike) -> tuple[Any, Any]:
    """The tokenizer and the text tower of a CLIP folder, or of a pipeline folder (its ``tokenizer`` and
    ``text_encoder``, e.g. the bundle's, so a new UNet is conditioned on the encoder it will ship with)."""
    from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        return tokenizer, CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
    return CLIPTokenizer.from_pretrained(folder), CLIPModel.from_pretrained(folder).text_model.eval()


def train_unet(run_dir: str | os.PathLike, cfg: UnetConfig) -> dict:
    """Epsilon-prediction on latents of the frozen VAE encoder, conditioned on the frozen CLIP text
    encoder's last hidden states (empty caption with probability ``cond_drop``); EMA weights are saved."""
    from diffusers import AutoencoderKL, DDPMScheduler

    run = Path(run_dir)
    out = run / "unet"
    gen = _setup(cfg)
    clip_dir = Path(cfg.clip_dir or run / "clip" / "model")
    vae_dir = Path(cfg.vae_dir or run / "vae" / "model")
    tokenizer, text_encoder = load_text_encoder(clip_dir)
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    latent_shape = (vae.config.latent_channels, 64 // vae_factor(vae))
    scale = vae.config.scaling_factor
    data = train_split(cfg.n_train)
    with torch.no_grad():
        posts = [vae.encode(data.as_float(slice(i, i + 128))).latent_dist for i in range(0, len(data), 128)]
        lat_mean = torch.cat([p.mean for p in posts])
        lat_std = torch.cat([p.std for p in posts])
    del posts
    captions = all_captions()
    text_states = encode_text(text_encoder, tokenizer, captions)  # (96, L, D)
    empty = encode_text(text_encoder, tokenizer, [""])  # (1, L, D)
    if cfg.init_from:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(cfg.init_from)
    else:
        unet = build_unet(cfg, text_states.shape[-1], latent_shape)
    ema = build_unet(cfg, text_states.shape[-1], latent_shape)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    noise_sched = DDPMScheduler.from_config(sd_scheduler_config())
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    log = _Log(out, cfg)
    eval_caps = _eval_captions(cfg.eval_samples, held_out=True)
    step = 0

    def save() -> None:
        _save_atomic(out / "model", ema.save_pretrained)

    for idx in _batches(len(data), cfg.batch_size, gen):
        if step >= cfg.steps or log.out_of_time():
            break
        z0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scale
        noise = torch.randn(z0.shape, generator=gen)
        if cfg.noise_offset > 0:
            noise = noise + cfg.noise_offset * torch.randn((*z0.shape[:2], 1, 1), generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        cond = text_states[data.caption_idx[idx]]
        drop = torch.rand(len(idx), generator=gen) < cfg.cond_drop
        cond = torch.where(drop[:, None, None], empty.expand_as(cond), cond)
        loss = _epsilon_loss(unet(zt, t, cond).sample, noise, t, noise_sched, cfg.snr_gamma)
        _optimise(loss, opt, sched)
        step += 1
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        if step % 20 == 0:
            log.write(step, loss=loss.item())
        if step % cfg.eval_every == 0:
            imgs = generate(
                ema, vae, text_encoder, tokenizer, eval_caps, cfg.eval_steps, cfg.guidance_scale, cfg.seed
            )
            acc = oracle_agreement(imgs, eval_caps)
            log.write(step, **{f"heldout_{k}": v for k, v in acc.items()}, eval_ddim_steps=cfg.eval_steps)
        if step % cfg.save_every == 0:
            save()
    save()
    metrics = final_unet_metrics(ema, vae, text_encoder, tokenizer, cfg)
    log.write(step, **{f"final_{k}": v for k, v in metrics.items() if isinstance(v, float)})
    return _finish(out, cfg, "unet", step, log, metrics)


def _epsilon_loss(
    pred: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, noise_sched: Any, snr_gamma: float
) -> torch.Tensor:
    """MSE of the predicted noise, per sample weighted by min(SNR, gamma) / SNR when ``snr_gamma`` > 0."""
    per_sample = (pred - noise).pow(2).flatten(1).mean(1)
    if snr_gamma <= 0:
        return per_sample.mean()
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_sched, t)
    return (per_sample * snr.clamp(max=snr_gamma) / snr).mean()


def final_unet_metrics(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, cfg: UnetConfig) -> dict:
    metrics: dict[str, Any] = {"ddim_steps": cfg.final_eval_steps, "guidance_scale": cfg.guidance_scale}
    for name, held in (("heldout_captions", True), ("seen_captions", False)):
        caps = _eval_captions(cfg.final_eval_samples, held_out=held)
        imgs = generate(
            unet, vae, text_encoder, tokenizer, caps, cfg.final_eval_steps, cfg.guidance_scale, cfg.seed + 1
        )
        metrics[name] = oracle_agreement(imgs, caps)
        metrics[name]["n"] = len(caps)
    return metrics


# --------------------------------------------------------------------------------------------------- BLIP
def build_blip(cfg: BlipConfig, tokenizer: Any) -> Any:
    from transformers import BlipConfig as HFBlipConfig
    from transformers import BlipForConditionalGeneration

    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        encoder_hidden_size=cfg.hidden,
        intermediate_size=2 * cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        label_smoothing=0.0,
    )
    vision = dict(
        hidden_size=cfg.hidden,
        intermediate_size=2 * cfg.hidden,
        num_hidden_layers=cfg.vision_layers or cfg.layers,
        num_attention_heads=cfg.heads,
        image_size=64,
        patch_size=cfg.patch,
        # a tower started from CLIP keeps CLIP's activation
        hidden_act="quick_gelu" if cfg.init_vision_from else "gelu",
    )
    return BlipForConditionalGeneration(
        HFBlipConfig(text_config=text, vision_config=vision, projection_dim=cfg.hidden)
    )


def blip_vision_state_from_clip(clip_vision: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``BlipVisionModel`` state dict from a ``CLIPVisionTransformer`` one of the same size.

    Same computation except two details fine-tuning absorbs: BLIP has no pre-layernorm (CLIP's is dropped)
    and its patch embedding has a bias (zero here). Q, K and V stack into BLIP's fused ``qkv`` projection.
    """
    out: dict[str, torch.Tensor] = {
        "embeddings.class_embedding": clip_vision["embeddings.class_embedding"].reshape(1, 1, -1),
        "embeddings.position_embedding": clip_vision["embeddings.position_embedding.weight"][None],
        "embeddings.patch_embedding.weight": clip_vision["embeddings.patch_embedding.weight"],
        "post_layernorm.weight": clip_vision["post_layernorm.weight"],
        "post_layernorm.bias": clip_vision["post_layernorm.bias"],
    }
    out["embeddings.patch_embedding.bias"] = torch.zeros(out["embeddings.patch_embedding.weight"].shape[0])
    layers = sorted({int(k.split(".")[2]) for k in clip_vision if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"self_attn.qkv.{kind}"] = torch.cat(
                [clip_vision[src + f"self_attn.{n}_proj.{kind}"] for n in ("q", "k", "v")]
            )
            out[dst + f"self_attn.projection.{kind}"] = clip_vision[src + f"self_attn.out_proj.{kind}"]
            for name in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"):
                out[dst + f"{name}.{kind}"] = clip_vision[src + f"{name}.{kind}"]
    return out


def build_blip_processor(tokenizer: Any) -> Any:
    from transformers import BlipImageProcessor, BlipProcessor

    image_processor = BlipImageProcessor(
        size={"height": 64, "width": 64}, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True
    )
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


@torch.no_grad()
def blip_captions(model: Any, tokenizer: Any, images: torch.Tensor) -> list[str]:
    """Greedy captions of (N,3,64,64) images in [-1, 1]."""
    model.eval()
    ids = model.generate(pixel_values=images, max_new_tokens=12, do_sample=False, num_beams=1)
    model.train()
    return [" ".join(tokenizer.decode(row, skip_special_tokens=True).split()) for row in ids]


def blip_exact_match(model: Any, tokenizer: Any, batch: SceneBatch) -> float:
    caps = all_captions()
    pred = blip_captions(model, tokenizer, batch.as_float())
    return sum(p == caps[i] for p, i in zip(pred, batch.caption_idx.tolist())) / len(batch)


def train_blip(run_dir: str | os.PathLike, cfg: BlipConfig) -> dict:
    """Teacher-forced captioning loss on (scene, caption)."""
    from zerocon.shapes.tokenizers import build_bert_tokenizer

    run = Path(run_dir)
    out = run / "blip"
    gen = _setup(cfg)
    if cfg.init_from:
        from transformers import BertTokenizer, BlipForConditionalGeneration

        tokenizer = BertTokenizer.from_pretrained(cfg.init_from)
        model = BlipForConditionalGeneration.from_pretrained(cfg.init_from)
    else:
        tokenizer = build_bert_tokenizer(run / "blip_tokenizer_src")
        model = build_blip(cfg, tokenizer)
    if cfg.init_vision_from and not cfg.init_from:
        from transformers import CLIPModel

        clip_vision = CLIPModel.from_pretrained(cfg.init_vision_from).vision_model.state_dict()
        try:
            model.vision_model.load_state_dict(blip_vision_state_from_clip(clip_vision))
        except RuntimeError as exc:
            raise ZeroconError(
                f"{cfg.init_vision_from}: its vision tower does not fit this BLIP config ({exc})"
            ) from None
    processor = build_blip_processor(tokenizer)
    data = train_split(cfg.n_train)
    val_seen, val_unseen = val_split(cfg.n_val, held_out=False), val_split(cfg.n_val, held_out=True)
    captions = all_captions()
    enc = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    )
    cap_ids, cap_mask = enc.input_ids, enc.attention_mask
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    log = _Log(out, cfg)
    step = 0

    def save() -> None:
        def write(folder: Path) -> None:
            model.save_pretrained(folder)
            processor.save_pretrained(folder)

        _save_atomic(out / "model", write)

    for idx in _batches(len(data), cfg.batch_size, gen):
        if step >= cfg.steps or log.out_of_time():
            break
        ids, mask = cap_ids[data.caption_idx[idx]], cap_mask[data.caption_idx[idx]]
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(pixel_values=data.as_float(idx), input_ids=ids, attention_mask=mask, labels=labels).loss
        _optimise(loss, opt, sched)
        step += 1
        if step % cfg.eval_every == 0:
            log.write(
                step,
                loss=loss.item(),
                exact_seen=blip_exact_match(model, tokenizer, val_seen),
                exact_heldout=blip_exact_match(model, tokenizer, val_unseen),
            )
        if step % cfg.save_every == 0:
            save()
    save()
    metrics = {
        "exact_match_val_seen": blip_exact_match(model, tokenizer, val_seen),
        "exact_match_val_heldout": blip_exact_match(model, tokenizer, val_unseen),
    }
    log.write(step, **metrics)
    return _finish(out, cfg, "blip", step, log, metrics)


TRAINERS: dict[str, Callable[[Any, Any], dict]] = {
    "clip": train_clip,
    "vae": train_vae,
    "unet": train_unet,
    "vae_decoder": train_vae_decoder,
    "blip": train_blip,
}


def run_stage(stage: str, run_dir: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict:
    """Train ``stage`` with its config defaults updated by ``overrides``; returns the metrics record."""
    if stage not in TRAINERS:
        raise ZeroconError(f"unknown stage '{stage}'; known: {', '.join(STAGES)}")
    cls = CONFIGS[stage]
    known = {f for f in cls.__dataclass_fields__}
    bad = [k for k in (overrides or {}) if k not in known]
    if bad:
        raise ZeroconError(f"stage '{stage}' has no setting '{bad[0]}'; settings: {', '.join(sorted(known))}")
    cfg = cls(**(overrides or {}))
    return TRAINERS[stage](run_dir, cfg)


# ---------------------------------------------------------------------------------------------------- CLI
def _parse_set(items: list[str], stage: str) -> dict[str, Any]:
    cls = CONFIGS[stage]
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ZeroconError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        fld = cls.__dataclass_fields__.get(key)
        if fld is None:
            raise ZeroconError(f"stage '{stage}' has no setting '{key}'")
        default = fld.default if fld.default is not field else None
        if isinstance(default, tuple):
            out[key] = tuple(int(v) for v in value.split(","))
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            out[key] = int(value)
        elif isinstance(default, float):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "train",
        help="train one ShapesWorld model (clip, vae, unet, vae_decoder, blip)",
        description="Train one ShapesWorld model. Order: clip and vae, then unet (needs both), vae_decoder, "
        "blip. Writes RUN/<stage>/model (save_pretrained), curve.jsonl and metrics.json.",
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--run", default="runs/shapes", help="run folder (default runs/shapes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other config fields")
    parser.set_defaults(func=_train_cmd)


def _train_cmd(args: Any) -> int:
    overrides = _parse_set(args.set, args.stage)
    overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    result = run_stage(args.stage, args.run, overrides)
    print(json.dumps(result["metrics"], indent=2))
    return 0


# ------------------------------------------------------------------------------------------------- curves
CURVE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "clip": (
        ("seen_shape_acc", "shape acc"),
        ("seen_color_acc", "colour acc"),
        ("heldout_shape_acc", "shape acc, held-out captions"),
    ),
    "vae": (("psnr_seen", "PSNR dB"), ("psnr_heldout", "PSNR dB, held-out captions")),
    "vae_decoder": (("psnr_seen", "PSNR dB"), ("psnr_heldout", "PSNR dB, held-out captions")),
    "unet": (
        ("heldout_shape_and_color", "oracle shape+colour, held-out captions"),
        ("heldout_color", "oracle colour"),
        ("heldout_shape", "oracle shape"),
    ),
    "blip": (("exact_seen", "exact caption match"), ("exact_heldout", "exact match, held-out captions")),
}
BARS = {"clip": 0.95, "vae": 30.0, "vae_decoder": 30.0, "unet": 0.90, "blip": 0.90}


def plot_curves(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """One panel per stage: each recorded metric against wall-clock minutes, with the issue's bar dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    stages = [s for s in CURVE_KEYS if (run / s / "curve.jsonl").exists()]
    if not stages:
        raise ZeroconError(f"no curve.jsonl under {run}")
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [
            json.loads(line)
            for line in (run / stage / "curve.jsonl").read_text().splitlines()
            if line.strip()
        ]
        for key, label in CURVE_KEYS[stage]:
            pts = [(r["seconds"] / 60, r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=label)
        ax.axhline(BARS[stage], ls="--", c="gray", lw=1, label="issue bar")
        ax.set_title(stage)
        ax.set_xlabel("minutes (shared 2-core CPU)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
