"""GPU speed and memory of ZeroConPipeline against diffusers' StableDiffusionPix2PixZeroPipeline at SD 1.5 size.

Both pipelines are built in code from one set of random-weight components with Stable Diffusion 1.5's full
architecture (nothing is downloaded): the SD 1.5 ``UNet2DConditionModel`` (~860 M parameters), SD's
``AutoencoderKL`` (scaling factor 0.18215), a CLIP-L-sized ``CLIPTextModel`` (768 wide, 12 layers, 77
positions), a ``CLIPTokenizer`` written offline by :func:`zerocon.shapes.tokenizers.build_clip_tokenizer`, and
DDIM with SD's schedule. For each dtype (float16, float32) and a fixed random 512x512 image, each job runs the
real-image pix2pix-zero recipe — ``invert`` (50 DDIM steps, regularised) then ``__call__`` (50 steps, guidance
scale 5, the caption as negative prompt, cross-attention guidance 0.1) along the direction between two
sentences:

* ours, ``method="pix2pix_zero"`` and ``method="zerocon"`` (PatchNCE guidance added);
* the peer (diffusers' pix2pix-zero; it has the one method).

Measured per job, after a 2-step warm-up of the same job: wall time of the inversion and of the edit (CUDA
synchronised around each), ``torch.cuda.max_memory_allocated`` (reset before the job; it includes the
weights, whose size is ``memory_before_mb``), whether the inverted latents and the decoded image are finite
and the image is not all black; an exception (out of memory, NaN) is recorded as the job's ``error``. The
ratios are the peer's total time over ours, per method and dtype. The JSON is rewritten after every job (so
a run cut short keeps what it measured; ``complete`` says whether it finished) and printed on stdout at the
end; progress goes to stderr. The default run takes a few minutes on one H200.

Run (one NVIDIA GPU): ``python benchmarks/gpu_edit.py`` (writes ``benchmarks/results/edit/gpu_edit.json``).
CPU smoke test: ``python benchmarks/gpu_edit.py --tiny --allow-cpu --out /tmp/gpu_edit_smoke.json`` (narrow
channels, 64 px, 3 steps). Other options: ``--steps``, ``--resolution``, ``--dtypes``, ``--methods``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

ROOT = Path(__file__).resolve().parents[1]
try:  # a checkout where zerocon is not installed (e.g. a bare GPU machine): use its src/
    import zerocon  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

from zerocon.io import write_json  # noqa: E402
from zerocon.shapes.tokenizers import build_clip_tokenizer, byte_alphabet  # noqa: E402

NO_GPU = "benchmarks/gpu_edit.py needs a CUDA GPU; none is available here"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "edit" / "gpu_edit.json"
CAPTION = "a photo of a cat sitting on the grass"
SOURCE = "a photo of a cat"
TARGET = "a photo of a dog"
GUIDANCE_SCALE = 5.0
CROSS_ATTENTION_GUIDANCE = 0.1
WARMUP_STEPS = 2
METHODS = ("pix2pix_zero", "zerocon")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the random-weight Stable Diffusion components (the VAE has 4 blocks: scale factor 8)."""

    unet_channels: tuple[int, ...]
    vae_channels: tuple[int, ...]
    text_width: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    vocab_size: int
    resolution: int
    steps: int


SD15 = ModelSpec((320, 640, 1280, 1280), (128, 256, 512, 512), 768, 12, 12, 3072, 49408, 512, 50)
"""Stable Diffusion 1.5 with a CLIP ViT-L/14 text encoder, at 512 px and pix2pix-zero's 50 steps."""
TINY = ModelSpec((32, 64, 64, 64), (32, 32, 32, 32), 32, 2, 4, 37, 1000, 64, 3)
"""SD 1.5's block layout with narrow channels: the CPU smoke test."""


# ---------------------------------------------------------------------------------------------- models
def sd_tokenizer(folder: Path):
    """A 77-token CLIPTokenizer over every byte, with one token for each word of the benchmark's sentences."""
    words = dict.fromkeys(" ".join((CAPTION, SOURCE, TARGET)).split())
    return build_clip_tokenizer(folder, 77, words=list(words), alphabet=byte_alphabet())


def sd_unet(spec: ModelSpec, seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=spec.resolution // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=spec.unet_channels,
        layers_per_block=2,
        attention_head_dim=8,
        cross_attention_dim=spec.text_width,
        norm_num_groups=32,
    )


def sd_vae(spec: ModelSpec, seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=spec.vae_channels,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=spec.resolution,
        scaling_factor=0.18215,
    )


def sd_text_encoder(spec: ModelSpec, tokenizer: Any, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=spec.vocab_size,
            hidden_size=spec.text_width,
            intermediate_size=spec.text_intermediate,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=spec.text_width,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def sd_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_components(spec: ModelSpec, tokenizer_folder: Path, seed: int = 0) -> dict[str, Any]:
    """Random-weight components in float32 on the CPU (the same weights for every call with ``seed``)."""
    tokenizer = sd_tokenizer(tokenizer_folder)
    components = {
        "vae": sd_vae(spec, seed),
        "text_encoder": sd_text_encoder(spec, tokenizer, seed + 1),
        "tokenizer": tokenizer,
        "unet": sd_unet(spec, seed + 2),
        "scheduler": sd_scheduler(),
    }
    for value in components.values():
        if isinstance(value, torch.nn.Module):
            value.eval().requires_grad_(False)
    return components


def parameter_counts(components: dict[str, Any]) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in components[name].parameters())
        for name in ("unet", "vae", "text_encoder")
    }


# ---------------------------------------------------------------------------------------------- pipelines
def peer_class() -> type:
    """diffusers' StableDiffusionPix2PixZeroPipeline (deprecated; its module moved between releases)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from diffusers import StableDiffusionPix2PixZeroPipeline
        except ImportError:
            from diffusers.pipelines.deprecated.stable_diffusion_variants.pipeline_stable_diffusion_pix2pix_zero import (
                StableDiffusionPix2PixZeroPipeline,
            )
    return StableDiffusionPix2PixZeroPipeline


def build_pipelines(components: dict[str, Any], device: str, dtype: torch.dtype) -> dict[str, Any]:
    """Ours and the peer over the same modules (moved once), each with its own schedulers."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    from zerocon.edit.pipeline import ZeroConPipeline

    modules = {k: v for k, v in components.items() if k != "scheduler"}
    config = components["scheduler"].config
    ours = ZeroConPipeline(**modules, scheduler=DDIMScheduler.from_config(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = peer_class()(
            **modules,
            scheduler=DDIMScheduler.from_config(config),
            inverse_scheduler=DDIMInverseScheduler.from_config(config),
            safety_checker=None,
            feature_extractor=None,
            caption_generator=None,
            caption_processor=None,
            requires_safety_checker=False,
        )
    pipes = {"ours": ours.to(device, dtype), "peer": peer.to(device, dtype)}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


def restore_unet(unet: torch.nn.Module, processors: dict[str, Any]) -> None:
    """Undo what the peer does to the shared UNet: its ``prepare_unet`` installs map-recording (non-SDPA)
    processors everywhere and turns on ``requires_grad`` for the cross-attention layers, which then collect
    weight gradients."""
    unet.set_attn_processor(dict(processors))  # set_attn_processor pops from the dict it is given
    unet.requires_grad_(False)
    unet.zero_grad(set_to_none=True)


def input_image(size: int, seed: int = 3) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


# ---------------------------------------------------------------------------------------------- one job
class DecodeWatch:
    """Whether each VAE decoder output was finite (the peer returns no latents to check; ours may decode a
    second time in float32 when a half-precision decode overflows)."""

    def __init__(self, vae: torch.nn.Module) -> None:
        self.finite: list[bool] = []
        self._handle = vae.decoder.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self.finite.append(bool(torch.isfinite(output).all()))

    def close(self) -> None:
        self._handle.remove()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(device)
    return out, time.perf_counter() - start


def invert(pipe: Any, image: PIL.Image.Image, steps: int) -> torch.Tensor:
    """pix2pix-zero's regularised DDIM inversion of ``image`` under the caption."""
    return pipe.invert(
        CAPTION,
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).latents


def edit(pipe: Any, kind: str, method: str, inverted: torch.Tensor, embeds: tuple, steps: int) -> list:
    """The guided edit from ``inverted`` along ``embeds`` = (source, target), decoded to PIL."""
    source, target = embeds
    return pipe(
        CAPTION,
        source_embeds=source,
        target_embeds=target,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE_SCALE,
        negative_prompt=CAPTION,
        latents=inverted,
        generator=torch.Generator().manual_seed(1),
        cross_attention_guidance_amount=CROSS_ATTENTION_GUIDANCE,
        output_type="pil",
        **({"method": method} if kind == "ours" else {}),
    ).images


def edit_job(
    pipe: Any, kind: str, method: str, image: PIL.Image.Image, embeds: tuple, steps: int, device: str
) -> dict[str, Any]:
    """``invert`` then ``__call__`` with pix2pix-zero's real-image recipe; times and output checks."""
    record: dict[str, Any] = {}
    inverted, record["invert_s"] = timed(device, invert, pipe, image, steps)
    record["inverted_finite"] = bool(torch.isfinite(inverted).all())
    watch = DecodeWatch(pipe.vae)
    try:
        images, record["edit_s"] = timed(device, edit, pipe, kind, method, inverted, embeds, steps)
    finally:
        watch.close()
    pixels = np.asarray(images[0])
    record["total_s"] = record["invert_s"] + record["edit_s"]
    record["image_finite"] = watch.finite[-1] if watch.finite else None
    record["decodes_finite"] = watch.finite
    record["image_nonblack"] = bool(pixels.max() > 0)
    record["image_mean"] = round(float(pixels.mean()), 2)
    return record


def describe_error(exc: BaseException) -> dict[str, Any]:
    """The exception's first line and its innermost frames (zerocon's first), paths shortened."""
    message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    frames = traceback.extract_tb(exc.__traceback__)

    def where(frame: traceback.FrameSummary) -> str:
        path = frame.filename.replace("\\", "/")
        if "/site-packages/" in path:
            path = path.rsplit("/site-packages/", 1)[1]
        elif path.startswith(str(ROOT)):
            path = str(Path(path).relative_to(ROOT))
        return f"{path}:{frame.lineno} in {frame.name}"

    ours = [where(f) for f in frames if "/zerocon/" in f.filename.replace("\\", "/")]
    return {"error": message[:600], "error_where": ours[-3:] + [where(frames[-1])] if frames else []}


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_job(
    pipes: dict[str, Any],
    kind: str,
    method: str,
    dtype_name: str,
    image: PIL.Image.Image,
    embeds: tuple,
    steps: int,
    device: str,
    processors: dict[str, Any],
) -> dict[str, Any]:
    """One measured job after a short warm-up of the same job; failures are recorded, not raised."""
    pipe = pipes[kind]
    result: dict[str, Any] = {"pipeline": kind, "method": method, "dtype": dtype_name}
    result.update(dict.fromkeys(("invert_s", "edit_s", "total_s", "max_memory_allocated_mb", "error")))
    try:
        restore_unet(pipe.unet, processors)
        warmup_steps = min(WARMUP_STEPS, steps)
        _, result["warmup_s"] = timed(
            device, edit_job, pipe, kind, method, image, embeds, warmup_steps, device
        )
        restore_unet(pipe.unet, processors)
        free_memory(device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            result["memory_before_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        result.update(edit_job(pipe, kind, method, image, embeds, steps, device))
    except Exception as exc:  # out of memory, NaN latents (ZeroconError), dtype mismatches, ...
        result.update(describe_error(exc))
        if "warmup_s" not in result:
            result["error"] = f"(warm-up) {result['error']}"
    finally:
        if device == "cuda":
            result["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        restore_unet(pipe.unet, processors)
        free_memory(device)
    for key in ("invert_s", "edit_s", "total_s", "warmup_s"):
        if result.get(key) is not None:
            result[key] = round(result[key], 3)
    return result


# ---------------------------------------------------------------------------------------------- the run
def ratios(jobs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """peer total / ours total, per dtype and method (``None`` where either job failed)."""
    out: dict[str, dict[str, float | None]] = {}
    for job in jobs:
        if job["pipeline"] != "ours":
            continue
        peer = next((j for j in jobs if j["pipeline"] == "peer" and j["dtype"] == job["dtype"]), None)
        ok = peer is not None and peer["total_s"] and job["total_s"]
        out.setdefault(job["dtype"], {})[job["method"]] = (
            round(peer["total_s"] / job["total_s"], 3) if ok else None
        )
    return out


def device_report(device: str) -> dict[str, Any]:
    import diffusers
    import transformers

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if device == "cuda":
        report["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        report["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    else:
        report["cpu_threads"] = torch.get_num_threads()
    return report


@contextmanager
def dtype_pipelines(
    spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype, config: dict[str, Any]
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Build the components (same seeds each time), move them to ``device`` / ``dtype``; free them after."""
    components = build_components(spec, folder)
    config.setdefault("parameters", parameter_counts(components))
    pipes = build_pipelines(components, device, dtype)
    processors = dict(pipes["ours"].unet.attn_processors)
    config.setdefault("attention_processors", sorted({type(p).__name__ for p in processors.values()}))
    try:
        yield pipes, processors
    finally:
        del components, pipes, processors
        free_memory(device)


def run(args: argparse.Namespace, device: str) -> dict[str, Any]:
    spec = TINY if args.tiny else SD15
    steps = args.steps or spec.steps
    resolution = args.resolution or spec.resolution
    spec = replace(spec, resolution=resolution, steps=steps)
    config: dict[str, Any] = {
        "tiny": args.tiny,
        "resolution": resolution,
        "latent_size": resolution // 8,
        "steps": steps,
        "warmup_steps": min(WARMUP_STEPS, steps),
        "guidance_scale": GUIDANCE_SCALE,
        "cross_attention_guidance_amount": CROSS_ATTENTION_GUIDANCE,
        "caption": CAPTION,
        "direction": [SOURCE, TARGET],
        "dtypes": args.dtypes,
        "methods": args.methods,
        "unet_channels": list(spec.unet_channels),
        "vae_channels": list(spec.vae_channels),
    }
    report: dict[str, Any] = {"benchmark": "gpu_edit", "complete": False, **device_report(device)}
    report.update(config=config, jobs=[], ratios={})
    image = input_image(resolution)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for dtype_name in args.dtypes:
            with dtype_pipelines(spec, Path(tmp) / "tokenizer", device, DTYPES[dtype_name], config) as (
                pipes,
                processors,
            ):
                ours = pipes["ours"]
                embeds = (ours.get_embeds([SOURCE]), ours.get_embeds([TARGET]))
                todo = [("ours", m) for m in args.methods] + [("peer", "pix2pix_zero")]
                for kind, method in todo:
                    log(f"{dtype_name} {kind} {method} ...")
                    job = run_job(pipes, kind, method, dtype_name, image, embeds, steps, device, processors)
                    log(f"  {json.dumps({k: job.get(k) for k in ('total_s', 'error')})}")
                    report["jobs"].append(job)
                    report["ratios"] = ratios(report["jobs"])
                    report["elapsed_s"] = round(time.perf_counter() - start, 1)
                    write_json(args.out, report)
    report["complete"] = True
    write_json(args.out, report)
    return report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50; --tiny: 3)")
    parser.add_argument("--resolution", type=int, default=None, help="image side (default 512; --tiny: 64)")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "float32"], choices=list(DTYPES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tiny", action="store_true", help="narrow channels, 64 px, 3 steps (smoke test)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.resolution is not None and args.resolution % 64:
        parser.error("--resolution must be a multiple of 64 (the UNet downsamples the 1/8 latent 3 times)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the cast-to-dtype advice, once per module and dtype
    if torch.cuda.is_available():
        device = "cuda"
    elif args.allow_cpu:
        device = "cpu"
    else:
        print(NO_GPU, file=sys.stderr)
        return 2
    report = run(args, device)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
