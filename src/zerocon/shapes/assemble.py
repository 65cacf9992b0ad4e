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


EXAMPLE_BACKGROUND = "white"
"""Background of the bundled example. Not gray: gray lies between red and blue, where a model of this world
reads a noised red square recaptioned blue as a blue square drawn elsewhere (the main job's edit failed on
every gray scene measured, and succeeded on every white one: ``benchmarks/shapes_recolour.py``)."""


def example_scene(background: str = EXAMPLE_BACKGROUND) -> Any:
    """The bundled example: a red square on a textured ``background``, no distractor."""
    from zerocon.shapes.world import SceneFilter, render_seed

    flt = SceneFilter(
        shapes=["square"], colors=["red"], backgrounds=[background], distractor_prob=0.0, texture_prob=1.0
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


def assemble(
    run_dir: str | os.PathLike,
    out: str | os.PathLike = SHAPES_DIR,
    base: str | os.PathLike | None = None,
    half_weights: bool = False,
) -> Path:
    """Build ``out/{pipeline,clip}``, ``out/metrics.json`` and ``out/example.png`` from a training run.

    With ``base`` (a bundle folder, e.g. the shipped one), a stage the run did not train takes its model and
    its ``metrics.json`` record from there, so a run may retrain only some models. ``out`` may be ``base``: the
    new bundle is written beside it and swapped in. ``half_weights`` stores the UNet's and the VAE's weights in
    float16 (half the bytes; ``from_pretrained`` loads them as float32 unless told otherwise), to keep the bundle
    small; measure the shipped weights afterwards. The pipeline's edit guidance scale starts at pix2pix-zero's
    5; choose the model's own on ShapesBench's tuning scenes afterwards with ``benchmarks/shapes_guidance.py
    --apply``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.io import staged_folder
    from zerocon.shapes.stages.unet import load_text_encoder, sd_scheduler_config

    run, out = Path(run_dir), Path(out)
    stages = _stage_records(run)
    fallback: dict[str, Path] = {}
    if base is not None:
        base = Path(base)
        base_stages = json.loads((base / "metrics.json").read_text())["stages"]
        for stage, record in base_stages.items():
            if stage not in stages:
                stages[stage] = {**record, "from_base_bundle": True}
        pipeline = base / "pipeline"
        fallback = {
            "clip": base / "clip",
            "text": pipeline,
            "vae": pipeline / "vae",
            "unet": pipeline / "unet",
            "blip": pipeline / "caption_generator",
            "blip_processor": pipeline / "caption_processor",
        }
    extra = lambda key: [fallback[key]] if key in fallback else []  # noqa: E731
    trained_unet = "unet" in stages and not stages["unet"].get("from_base_bundle")
    clip_text_dir = _unet_text_encoder(run, stages) if trained_unet else _first(*extra("text"))
    clip_dir = _first(run / "clip_vision" / "model", run / "clip" / "model", *extra("clip"))
    vae_dir = _first(run / "vae_decoder" / "model", run / "vae_fork", run / "vae" / "model", *extra("vae"))
    unet_dir = _first(run / "unet" / "model", *extra("unet"))
    blip_dir = _first(run / "blip" / "model", *extra("blip"))
    processor_dir = (
        blip_dir if (blip_dir / "preprocessor_config.json").is_file() else _first(*extra("blip_processor"))
    )

    tokenizer, text_encoder = load_text_encoder(clip_text_dir)
    pipe = ZeroConPipeline(
        vae=AutoencoderKL.from_pretrained(vae_dir),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(unet_dir),
        scheduler=DDIMScheduler(**sd_scheduler_config()),
        caption_generator=BlipForConditionalGeneration.from_pretrained(blip_dir),
        caption_processor=BlipProcessor.from_pretrained(processor_dir),
        caption_prefix="",  # the ShapesWorld BLIP is trained on bare captions, with no text prompt
        # The world's vocabulary has none of the template words. Guidance scale and PatchNCE weight are chosen
        # afterwards on ShapesBench's tune split (benchmarks/shapes_guidance.py, benchmarks/shapes_tradeoff.py).
        edit_defaults={"use_templates": False},
    )

    def where(path: Path) -> str:
        if base is not None and path.resolve().is_relative_to(base.resolve()):
            return f"base bundle: {path.resolve().relative_to(base.resolve())}"
        return _where(path, run)

    if half_weights:
        import torch

        pipe.unet.to(torch.float16)
        pipe.vae.to(torch.float16)
    with staged_folder(out) as staging:
        pipe.save_pretrained(staging / "pipeline")
        shutil.copytree(clip_dir, staging / "clip")
        write_json(
            staging / "metrics.json",
            {
                "stages": stages,
                "sources": {
                    "pipeline/vae": where(vae_dir),
                    "pipeline/text_encoder": where(clip_text_dir),
                    "pipeline/unet": where(unet_dir),
                    "pipeline/caption_generator": where(blip_dir),
                    "clip": where(clip_dir),
                },
            },
        )
        save_image_atomic(example_scene().pil(), staging / "example.png")
    return out


def bundle_size(folder: str | os.PathLike = SHAPES_DIR) -> int:
    """Total bytes of the bundle (kept under 25 MB so the package stays small)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
