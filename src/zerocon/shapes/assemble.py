"""Assemble the trained ShapesWorld models into the bundled folders of ``zerocon/assets/shapes``.

``pipeline/`` is a :class:`~zerocon.edit.pipeline.ZeroConPipeline` saved with ``save_pretrained`` (vae,
text_encoder, tokenizer, unet, DDIM scheduler with Stable Diffusion 1.x's schedule, BLIP captioner and its
processor), so ``ZeroConPipeline.from_pretrained("shapes")`` loads it through the same code path as a hub
model. Its text encoder is the text tower of the CLIP the UNet was trained with (the UNet stage's ``clip_dir``).
``clip/`` is the full CLIPModel + CLIPProcessor used by the metrics and LANIT: the run's latest CLIP, which
may be a later, better-trained one than the UNet's conditioning encoder (as Stable Diffusion's text encoder is
not the CLIP a paper evaluates with).
``metrics.json`` gathers each stage's metrics, config, step count and command; ``example.png`` is a bundled
scene for the main job.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from zerocon.errors import ZeroconError
from zerocon.io import save_image_atomic, write_json
from zerocon.models import SHAPES_DIR

EXAMPLE_SEED = 40_000_000
"""Seed range of the bundled example scene (disjoint from training, validation and ShapesBench)."""


def example_scene() -> Any:
    """The bundled example: a red square on a textured gray background, no distractor."""
    from zerocon.shapes.world import SceneFilter, render_seed

    flt = SceneFilter(
        shapes=["square"], colors=["red"], backgrounds=["gray"], distractor_prob=0.0, texture_prob=1.0
    )
    return render_seed(EXAMPLE_SEED, flt)


def _first(*folders: Path) -> Path:
    for folder in folders:
        if folder.is_dir():
            return folder
    raise ZeroconError(f"no trained model found at {' or '.join(map(str, folders))}")


STAGES = ("clip", "clip_vision", "vae", "vae_decoder", "unet", "blip", "unet_eval")


def _stage_records(run: Path) -> dict[str, dict]:
    """Each stage's ``metrics.json``, with its full command chain from ``RUN/commands.json`` if present."""
    stages = {}
    for stage in STAGES:
        path = run / stage / "metrics.json"
        if path.exists():
            stages[stage] = json.loads(path.read_text())
    commands_file = run / "commands.json"
    if commands_file.exists():  # the full chain of commands of each stage (continuations included)
        for stage, command in json.loads(commands_file.read_text()).items():
            if stage in stages:
                stages[stage]["command"] = command
    return stages


def _unet_text_encoder(run: Path, stages: dict[str, dict]) -> Path:
    """The CLIP folder the UNet stage was conditioned on (its recorded ``clip_dir``), else ``RUN/clip``."""
    clip_dir = stages.get("unet", {}).get("config", {}).get("clip_dir")
    return _first(Path(clip_dir)) if clip_dir else _first(run / "clip" / "model")


def _where(path: Path, run: Path) -> str:
    return str(path.relative_to(run)) if path.is_relative_to(run) else str(path)


def assemble(run_dir: str | os.PathLike, out: str | os.PathLike = SHAPES_DIR) -> Path:
    """Build ``out/{pipeline,clip}``, ``out/metrics.json`` and ``out/example.png`` from a training run.

    The pipeline's edit guidance scale starts at pix2pix-zero's 5; choose the model's own on ShapesBench's
    tuning scenes afterwards with ``benchmarks/shapes_guidance.py --apply``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.shapes.train import load_text_encoder, sd_scheduler_config

    run, out = Path(run_dir), Path(out)
    stages = _stage_records(run)
    clip_text_dir = _unet_text_encoder(run, stages)
    clip_dir = _first(run / "clip_vision" / "model", run / "clip" / "model")
    vae_dir = _first(run / "vae_decoder" / "model", run / "vae_fork", run / "vae" / "model")
    unet_dir = _first(run / "unet" / "model")
    blip_dir = _first(run / "blip" / "model")

    tokenizer, text_encoder = load_text_encoder(clip_text_dir)
    pipe = ZeroConPipeline(
        vae=AutoencoderKL.from_pretrained(vae_dir),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(unet_dir),
        scheduler=DDIMScheduler(**sd_scheduler_config()),
        caption_generator=BlipForConditionalGeneration.from_pretrained(blip_dir),
        caption_processor=BlipProcessor.from_pretrained(blip_dir),
        caption_prefix="",  # the ShapesWorld BLIP is trained on bare captions, with no text prompt
        # The world's vocabulary has none of the template words. Guidance scale and PatchNCE weight are chosen
        # afterwards on ShapesBench's tune split (benchmarks/shapes_guidance.py, benchmarks/shapes_tradeoff.py).
        edit_defaults={"use_templates": False},
    )
    out.mkdir(parents=True, exist_ok=True)
    for name in ("pipeline", "clip"):
        shutil.rmtree(out / name, ignore_errors=True)
    pipe.save_pretrained(out / "pipeline")
    shutil.copytree(clip_dir, out / "clip")

    write_json(
        out / "metrics.json",
        {
            "stages": stages,
            "sources": {
                "pipeline/vae": _where(vae_dir, run),
                "pipeline/text_encoder": _where(clip_text_dir, run),
                "pipeline/unet": _where(unet_dir, run),
                "pipeline/caption_generator": _where(blip_dir, run),
                "clip": _where(clip_dir, run),
            },
        },
    )
    save_image_atomic(example_scene().pil(), out / "example.png")
    return out


def bundle_size(folder: str | os.PathLike = SHAPES_DIR) -> int:
    """Total bytes of the bundle (the issue allows 25 MB)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
