"""``zerocon edit`` and ``zerocon invert``: the command-line face of :class:`ZeroConPipeline`.

For every input photo ``zerocon edit`` writes one folder ``OUT/<name>/`` holding ``edit.png``,
``reconstruction.png``, ``comparison.png`` (input | reconstruction | edit) and ``record.json`` (every setting,
the caption, the direction, the seed, timings). The folder is assembled under a temporary name and renamed
into place, so an interrupted or failed input leaves nothing half-written. ``zerocon invert`` writes
``inversion.safetensors`` (x_T and the caption) and ``record.json`` (and ``reconstruction.png`` with
``--reconstruct``).

Inversions are cached (safetensors) under ``--cache-dir`` keyed by the image bytes, the model and every
setting the inversion depends on, so editing the same photo again skips the inversion. With several inputs,
good ones are processed and bad ones are listed at the end; the exit status is non-zero if any failed. An
output folder whose record shows the same request is kept, so running a command again after an interruption
only does what is left.

Under ``accelerate launch -m zerocon.cli edit DIR ...`` the inputs are shared out by process rank (each
process on its own GPU); the main process prints one summary of every process's failures and every process
exits with the same status.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from zerocon.edit.captioning import DEFAULT_CAPTIONER
from zerocon.edit.config import CROSS_ATTENTION_GUIDANCE_AMOUNT, GRADIENT_SCALES, NUM_PATCHES, check_method
from zerocon.errors import ZeroconError
from zerocon.io import staged_folder

DEFAULT_MODEL = os.environ.get("ZEROCON_MODEL", "shapes")
"""The model of ``--model``'s default: the bundled 64-px ShapesWorld toy (offline), unless ``ZEROCON_MODEL``
names another."""
DEFAULT_CACHE = Path(os.environ.get("ZEROCON_CACHE", Path.home() / ".cache" / "zerocon" / "inversions"))


def register(subparsers: Any, name: str) -> None:
    """Add the ``edit`` or ``invert`` sub-command."""
    from zerocon.cli import HelpFormatter
    from zerocon.devices import DEVICES, DTYPES

    if name == "edit":
        parser = subparsers.add_parser(
            "edit",
            formatter_class=HelpFormatter,
            help="edit photos zero-shot (pix2pix-zero / pix2pix-zeroCon)",
            description="Edit photos with a pretrained text-to-image diffusion model, no training: caption -> "
            "regularised DDIM inversion -> reference pass -> guided edit.",
        )
        parser.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="photos or folders of photos")
        parser.add_argument(
            "--target",
            default=None,
            help="'cat->dog' (word swap on the caption), a target word with --source, or a full sentence",
        )
        parser.add_argument("--source", default=None, help="source word or sentence (optional)")
        parser.add_argument("--method", default="zerocon", help="zerocon, pix2pix_zero or word_swap")
        parser.add_argument("--source-sentences", type=Path, default=None, help="file, one sentence a line")
        parser.add_argument("--target-sentences", type=Path, default=None, help="file, one sentence a line")
        parser.add_argument("--direction", type=Path, default=None, help="a saved direction (.safetensors)")
        parser.add_argument("--save-direction", type=Path, default=None, help="save the direction used here")
        parser.add_argument(
            "--no-templates",
            action="store_true",
            help="no template sentence banks (a word swap whose source word is not in the caption is then "
            "refused); default: the model's edit_defaults, templates for Stable Diffusion",
        )
        parser.add_argument(
            "--guidance-scale",
            type=float,
            default=None,
            help="CFG with the caption as negative (default: the model's edit_defaults, 5 for SD)",
        )
        parser.add_argument(
            "--xa-guidance",
            type=float,
            default=CROSS_ATTENTION_GUIDANCE_AMOUNT,
            help="cross-attention guidance step (0.01 for SD 2.x)",
        )
        parser.add_argument(
            "--nce-weight",
            type=float,
            default=None,
            help="PatchNCE weight of zerocon (default: the model's edit_defaults, 1 for SD)",
        )
        parser.add_argument("--nce-patches", type=int, default=NUM_PATCHES, help="PatchNCE patches per layer")
        parser.add_argument(
            "--nce-scale",
            default=None,
            choices=GRADIENT_SCALES,
            help="what --nce-weight multiplies: the PatchNCE gradient sized to the cross-attention gradient's "
            "norm (relative: the same meaning on every model) or the PatchNCE loss (absolute) (default: the "
            "model's edit_defaults, relative for SD)",
        )
        parser.add_argument("--nce-t-range", type=int, nargs=2, default=(0, 1000), metavar=("TMIN", "TMAX"))
    elif name == "invert":
        parser = subparsers.add_parser(
            "invert",
            formatter_class=HelpFormatter,
            help="regularised DDIM inversion of photos (cached for later edits)",
            description="Caption and invert photos with pix2pix-zero's regularised DDIM inversion.",
        )
        parser.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="photos or folders of photos")
        parser.add_argument(
            "--source",
            default=None,
            help="with --captioner none: the input's caption is 'a photo of a SOURCE'",
        )
        parser.add_argument("--reconstruct", action="store_true", help="also write reconstruction.png")
        parser.add_argument(
            "--guidance-scale",
            type=float,
            default=None,
            help="CFG of the reconstruction (default: the model's edit_defaults, 5 for SD)",
        )
    else:
        raise ValueError(f"zerocon.edit.cli registers 'edit' and 'invert', not {name!r}")
    parser.add_argument("--caption", default=None, help="use this caption instead of the captioner's")
    parser.add_argument(
        "--model",
        default=None,
        help=f"hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5), local folder, or 'shapes' (default: {DEFAULT_MODEL}; "
        "'shapes' is the bundled 64-px ShapesWorld toy model, offline)",
    )
    parser.add_argument(
        "--captioner",
        default="auto",
        help="BLIP hub id or folder, or 'none'; auto: the model's own, else "
        f"{DEFAULT_CAPTIONER} (diffusers' pix2pix-zero recipe)",
    )
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (inversion and edit)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same image")
    parser.add_argument("--out", type=Path, default=Path("zerocon-out"), help="output folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="inversion cache folder")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the inversion cache")
    parser.add_argument("--allow-zero-roll", action="store_true", help="diffusers' roll offsets (may be 0)")
    parser.add_argument(
        "--device", default="auto", help=f"{', '.join(DEVICES)} or cuda:N; auto: CUDA, then MPS, then CPU"
    )
    parser.add_argument(
        "--dtype", default="auto", choices=DTYPES, help="auto: float16 on CUDA, float32 elsewhere"
    )
    parser.add_argument("--vae-slicing", action="store_true", help="decode a batch one image at a time")
    parser.add_argument("--vae-tiling", action="store_true", help="encode / decode in tiles (large images)")
    parser.add_argument(
        "--cpu-offload", action="store_true", help="keep each model on the CPU until it runs (8-12 GB GPUs)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_edit if name == "edit" else run_invert)


# ---------------------------------------------------------------------- settings and validation
def _config(args: argparse.Namespace) -> Any:
    from zerocon.edit.config import METHODS, EditConfig, PatchNCEGuidance

    method = getattr(args, "method", METHODS[0])
    check_method(method)
    if args.steps < 1:
        raise ZeroconError(f"--steps must be at least 1, got {args.steps}")
    try:
        nce = PatchNCEGuidance(
            weight=getattr(args, "nce_weight", None),
            num_patches=getattr(args, "nce_patches", NUM_PATCHES),
            scale=getattr(args, "nce_scale", None),
            t_min=getattr(args, "nce_t_range", (0, 1000))[0],
            t_max=getattr(args, "nce_t_range", (0, 1000))[1],
        )
    except ValueError as exc:
        raise ZeroconError(str(exc)) from exc
    return EditConfig(
        method=method,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        cross_attention_guidance_amount=getattr(args, "xa_guidance", CROSS_ATTENTION_GUIDANCE_AMOUNT),
        patch_nce=nce,
        allow_zero_roll=args.allow_zero_roll,
        use_templates=False if getattr(args, "no_templates", False) else None,  # None: the model's choice
        template_caption=args.captioner == "none",
        seed=args.seed,
    )


def _validate_edit_request(args: argparse.Namespace) -> None:
    from zerocon.edit.directions import parse_target

    files = (args.source_sentences, args.target_sentences)
    if any(files) and not all(files):
        raise ZeroconError("--source-sentences and --target-sentences go together")
    if args.direction is None and not all(files):
        if args.target is None:
            raise ZeroconError("give --target (e.g. 'cat->dog'), sentence files, or --direction")
        parse_target(args.target, args.source)
    elif args.target is not None:
        parse_target(args.target, args.source)


def _collect_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    from zerocon.images import find_images

    found, failures = [], []
    for item in inputs:
        try:
            paths = find_images([item])
        except ZeroconError as exc:
            failures.append(str(exc))
            continue
        if not paths:
            failures.append(f"{item}: no image files in this folder")
        found.extend(paths)
    return found, failures


def _notice(message: str) -> None:
    print(f"zerocon: notice: {message}", file=sys.stderr)


def _model_name(args: argparse.Namespace) -> str:
    """``--model``, or the default (with a one-line notice that the toy model is used, and how not to)."""
    if args.model is None:
        args.model = DEFAULT_MODEL
        if _is_main_process():
            _notice(
                f"no --model given: using '{DEFAULT_MODEL}'"
                + (
                    ", the bundled 64-px ShapesWorld toy model; for photos give a Stable Diffusion checkpoint, "
                    "e.g. --model stable-diffusion-v1-5/stable-diffusion-v1-5"
                    if DEFAULT_MODEL == "shapes"
                    else ""
                )
            )
    return args.model


def _process_state() -> Any:
    """Accelerate's view of the launch (one process without ``accelerate launch``)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # Accelerator() reads ACCELERATE_USE_CPU (several CPU processes), PartialState() must be told
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def _is_main_process() -> bool:
    return _process_state().is_main_process


def _device(args: argparse.Namespace) -> Any:
    """``--device``; under a multi-process launch each process takes the GPU of its rank."""
    import torch

    from zerocon.devices import resolve_device

    state = _process_state()
    if state.num_processes > 1 and args.device in ("auto", "cuda") and state.device.type != "cpu":
        return torch.device(state.device)
    return resolve_device(args.device)


def _load_pipeline(args: argparse.Namespace) -> Any:
    """The pipeline on ``--device`` in ``--dtype`` with ``--captioner`` and the memory options."""
    from zerocon.edit.loading import load_edit_pipeline

    pipe = load_edit_pipeline(
        _model_name(args),
        captioner=args.captioner,
        device=_device(args),
        dtype=args.dtype,
        need_captioner=args.caption is None,
        cpu_offload=args.cpu_offload,
        vae_slicing=args.vae_slicing,
        vae_tiling=args.vae_tiling,
    )
    pipe.set_progress_bar_config(disable=args.quiet, leave=False, file=sys.stderr)
    return pipe


def _runtime(pipe: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Where and how an input was processed, for its record."""
    state = _process_state()
    return {
        "device": str(pipe._execution_device),
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "captioner": _captioner_name(pipe, args),
        "cpu_offload": args.cpu_offload,
        "vae_slicing": args.vae_slicing,
        "vae_tiling": args.vae_tiling,
        "process": f"{state.process_index} of {state.num_processes}",
    }


def _request_runtime(runtime: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``runtime`` an output depends on (not which process or which GPU of several made it)."""
    return {
        "device": runtime["device"].split(":")[0],
        "dtype": runtime["dtype"],
        "captioner": runtime["captioner"],
    }


def _captioner_name(pipe: Any, args: argparse.Namespace) -> str | None:
    if not pipe.has_captioner:
        return None
    if args.captioner not in ("auto", "none"):
        return args.captioner
    own = Path(str(getattr(pipe.caption_generator, "name_or_path", "") or "")).name == "caption_generator"
    return f"{args.model}/caption_generator" if own else DEFAULT_CAPTIONER


# ---------------------------------------------------------------------- cache
def _model_key(args: argparse.Namespace) -> str:
    """The model's identity: its resolved location plus, for a folder, the size and mtime of its files."""
    from zerocon.models import resolve_model

    location = resolve_model(args.model)
    parts = [location]
    folder = Path(location)
    if folder.is_dir():
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                stat = file.stat()
                parts.append(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def inversion_cache_key(image_bytes: bytes, model_key: str, settings: dict[str, Any]) -> str:
    """SHA-256 of the image bytes, the model identity and the inversion settings."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image_bytes).digest())
    digest.update(model_key.encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _cache_read(cache_dir: Path, key: str) -> Any:
    from safetensors import SafetensorError, safe_open

    from zerocon.edit.pipeline import Inversion

    file = cache_dir / f"{key}.safetensors"
    if not file.is_file():
        return None
    try:
        with safe_open(str(file), framework="pt") as fh:
            latents = fh.get_tensor("latents")
            meta = fh.metadata() or {}
        return Inversion(
            latents=latents,
            caption=meta["caption"],
            input_size=tuple(json.loads(meta["size"])),
            caption_source=meta.get("caption_source", "given"),
        )
    except (SafetensorError, OSError, KeyError, ValueError):
        return None  # a damaged cache entry is recomputed and overwritten


def _write_inversion(path: Path, inversion: Any, settings: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from zerocon.io import atomic_path

    with atomic_path(path) as tmp:
        save_file(
            {"latents": inversion.latents.detach().float().cpu().contiguous()},
            str(tmp),
            metadata={
                "caption": inversion.caption,
                "caption_source": inversion.caption_source,
                "size": json.dumps(list(inversion.input_size)),
                "settings": json.dumps(settings, sort_keys=True, default=str),
            },
        )


def _inversion(
    pipe: Any, args: argparse.Namespace, path: Path, config: Any, model_key: str, source: str | None
) -> tuple[Any, bool]:
    """Invert ``path`` (or take it from the cache); returns the inversion and whether it was a cache hit."""
    if pipe.has_captioner:
        source = None  # the caption comes from BLIP; the source word does not change the inversion
    settings = {
        **config.inversion_key(),
        "caption": args.caption,
        "source_if_no_blip": source,
        "captioner": _captioner_name(pipe, args),
        "dtype": str(pipe.unet.dtype),
    }
    key = inversion_cache_key(path.read_bytes(), model_key, settings)
    if not args.no_cache:
        cached = _cache_read(args.cache_dir, key)
        if cached is not None:
            return cached, True
    inversion = pipe.invert_image(path, caption=args.caption, source=source, config=config)
    if not args.no_cache:
        try:
            _write_inversion(args.cache_dir / f"{key}.safetensors", inversion, settings)
        except OSError as exc:
            print(f"zerocon: warning: cannot write the inversion cache ({exc})", file=sys.stderr)
    return inversion, False


# ---------------------------------------------------------------------- output folders
def _unique_names(paths: list[Path]) -> list[str]:
    names, used = [], set()
    for path in paths:
        base = path.stem or "image"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def _request_key(path: Path, request: dict[str, Any]) -> str:
    """What an output folder was made from: the input's bytes and every setting of the request."""
    digest = hashlib.sha256(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps(request, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _finished(folder: Path, key: str) -> bool:
    try:
        return json.loads((folder / "record.json").read_text()).get("request_key") == key
    except (OSError, ValueError, AttributeError):
        return False


def _process_all(
    args: argparse.Namespace, paths: list[Path], failures: list[str], start: Any, verb: str
) -> int:
    """Process this process's share of ``paths`` and summarise every process's results on the main one.

    ``start()`` loads what the work needs (only in a process that has inputs left) and returns
    ``(work, request)``: ``request(path)`` is the dict of everything the output depends on, and
    ``work(path, staging) -> record`` fills a staging folder whose ``record.json`` this function writes. A
    folder whose record holds the same request key is skipped (a re-run after an interruption).
    """
    from accelerate.utils import gather_object

    from zerocon.io import write_json

    state = _process_state()
    names = _unique_names(paths)
    with state.split_between_processes(list(zip(paths, names))) as shard:
        shard = list(shard)
    own_failures: list[str] = []
    good = set(_check_images([path for path, _ in shard], own_failures))
    shard = [(path, name) for path, name in shard if path in good]
    done = skipped = 0
    if shard:
        work, request = start()
        args.out.mkdir(parents=True, exist_ok=True)
        for path, name in shard:
            folder = args.out / name
            try:
                key = _request_key(path, request(path))
                if _finished(folder, key):
                    skipped += 1
                    print(f"{path} -> {folder} (already done)", file=sys.stderr)
                    continue
                with staged_folder(folder) as staging:
                    record = work(path, staging)
                    write_json(staging / "record.json", {**record, "request_key": key})
                done += 1
                print(f"{path} -> {folder}", file=sys.stderr)
            except ZeroconError as exc:
                own_failures.append(str(exc))
    results = gather_object([(done, skipped, own_failures)])
    done = sum(r[0] for r in results)
    skipped = sum(r[1] for r in results)
    every_failure = failures + [message for r in results for message in r[2]]
    if state.is_main_process:
        if skipped:
            print(f"zerocon: {skipped} input(s) already done with these settings, kept", file=sys.stderr)
        if every_failure:
            total = done + skipped + len(every_failure)
            print(f"zerocon: {verb} {done + skipped} of {total} inputs; failed:", file=sys.stderr)
            for message in every_failure:
                print(f"  {message}", file=sys.stderr)
    return 2 if every_failure else 0


def _check_images(paths: list[Path], failures: list[str]) -> list[Path]:
    """Open every input once (all bad-input errors come from zerocon.images) before loading the model."""
    from zerocon.images import load_image

    good = []
    for path in paths:
        try:
            load_image(path)
            good.append(path)
        except ZeroconError as exc:
            failures.append(str(exc))
    return good


def _versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    from zerocon import __version__

    return {
        "zerocon": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


# ---------------------------------------------------------------------- commands
def _inputs_or_errors(args: argparse.Namespace) -> tuple[list[Path], list[str]] | None:
    paths, failures = _collect_inputs(args.inputs)
    if paths:
        return paths, failures
    if _is_main_process():
        for message in failures:
            print(f"zerocon: error: {message}", file=sys.stderr)
    return None


def _notices(path: Path, inversion: Any, direction: Any = None) -> None:
    """One line for each choice the user did not spell out: a template caption, a template-only direction."""
    if inversion.caption_source == "template":
        _notice(f"{path}: no captioner (--captioner none), captioned '{inversion.caption}'")
    if direction is not None and direction.kind == "templates":
        _notice(f"{path}: {direction.reason}")


def run_edit(args: argparse.Namespace) -> int:
    config = _config(args)
    _validate_edit_request(args)
    found = _inputs_or_errors(args)
    if found is None:
        return 2
    paths, failures = found
    return _process_all(args, paths, failures, lambda: _edit_job(args, config), "edited")


def _edit_job(args: argparse.Namespace, config: Any) -> tuple[Any, Any]:
    from zerocon.edit.directions import EditDirection, direction_from_files, parse_target
    from zerocon.images import load_image, side_by_side
    from zerocon.io import save_image_atomic

    pipe = _load_pipeline(args)
    config = config.for_model(pipe.config)  # the record states every setting used
    model_key = _model_key(args)
    runtime = _runtime(pipe, args)
    direction = None
    if args.direction is not None:
        direction = EditDirection.load(args.direction)
    elif args.source_sentences is not None:
        direction = direction_from_files(pipe, args.source_sentences, args.target_sentences)
    request = parse_target(args.target, args.source) if args.target else None
    source = request.source if request else None

    def describe_request(path: Path) -> dict[str, Any]:
        return {
            "command": "edit",
            "model": model_key,
            "settings": dataclasses.asdict(config),
            "target": args.target,
            "source": args.source,
            "caption": args.caption,
            "direction": direction.describe() if direction is not None else None,
            "runtime": _request_runtime(runtime),
        }

    def work(path: Path, staging: Path) -> dict[str, Any]:
        start = time.perf_counter()
        inversion, hit = _inversion(pipe, args, path, config, model_key, source)
        result = pipe.edit(
            path,
            target=args.target,
            source=args.source,
            direction=direction,
            config=config,
            inversion=inversion,
        )
        _notices(path, inversion, result.direction)
        if args.save_direction is not None:
            result.direction.save(args.save_direction)
        original = load_image(path)
        save_image_atomic(result.edit, staging / "edit.png")
        save_image_atomic(result.reconstruction, staging / "reconstruction.png")
        comparison = side_by_side(
            [original, result.reconstruction, result.edit], ["input", "reconstruction", "edit"]
        )
        save_image_atomic(comparison, staging / "comparison.png")
        timings = {**result.timings, "total": time.perf_counter() - start}
        return {
            "input": str(path),
            "model": args.model,
            "method": config.method,
            "target": args.target,
            "source": args.source,
            "caption": result.caption,
            "caption_source": result.caption_source,
            "edited_caption": result.edited_caption,
            "direction": result.direction.describe(),
            "scheduler": result.scheduler,
            **runtime,
            "seed": config.seed,
            "settings": dataclasses.asdict(config),
            "inversion_cache_hit": hit,
            "input_size": list(original.size),
            "output_size": list(result.edit.size),
            "timings_seconds": timings,
            "files": ["edit.png", "reconstruction.png", "comparison.png"],
            "versions": _versions(),
        }

    return work, describe_request


def run_invert(args: argparse.Namespace) -> int:
    config = _config(args)
    found = _inputs_or_errors(args)
    if found is None:
        return 2
    paths, failures = found
    return _process_all(args, paths, failures, lambda: _invert_job(args, config), "inverted")


def _invert_job(args: argparse.Namespace, config: Any) -> tuple[Any, Any]:
    import torch

    from zerocon.edit.pipeline import _output_size
    from zerocon.edit.schedulers import describe_scheduler
    from zerocon.io import save_image_atomic

    pipe = _load_pipeline(args)
    config = config.for_model(pipe.config)
    model_key = _model_key(args)
    runtime = _runtime(pipe, args)
    scheduler, inverse_scheduler = pipe.recipe_schedulers()

    def describe_request(path: Path) -> dict[str, Any]:
        return {
            "command": "invert",
            "model": model_key,
            "settings": config.inversion_key(),
            "caption": args.caption,
            "source": args.source,
            "reconstruct": args.reconstruct,
            "guidance_scale": config.guidance_scale,
            "runtime": _request_runtime(runtime),
        }

    def work(path: Path, staging: Path) -> dict[str, Any]:
        start = time.perf_counter()
        inversion, hit = _inversion(pipe, args, path, config, model_key, args.source)
        _notices(path, inversion)
        _write_inversion(staging / "inversion.safetensors", inversion, config.inversion_key())
        files = ["inversion.safetensors"]
        if args.reconstruct:
            embeds = pipe.get_embeds([inversion.caption])
            pipe.set_progress_bar_config(**{**pipe._bar_config(), "desc": "reconstruction"})
            image = pipe(
                inversion.caption,
                source_embeds=embeds,
                target_embeds=embeds,
                num_inference_steps=config.num_inference_steps,
                guidance_scale=config.guidance_scale,
                negative_prompt=inversion.caption,
                latents=inversion.latents.to(pipe._execution_device),
                generator=torch.Generator().manual_seed(config.seed + 1),
                method="word_swap",
                scheduler=scheduler,
            ).images[0]
            image = image.resize(_output_size(inversion.input_size, pipe.model_size))
            save_image_atomic(image, staging / "reconstruction.png")
            files.append("reconstruction.png")
        return {
            "input": str(path),
            "model": args.model,
            "caption": inversion.caption,
            "caption_source": inversion.caption_source,
            "scheduler": describe_scheduler(inverse_scheduler, pipe.scheduler),
            **runtime,
            "seed": config.seed,
            "settings": config.inversion_key(),
            "inversion_cache_hit": hit,
            "latent_shape": list(inversion.latents.shape),
            "timings_seconds": {**inversion.timings, "total": time.perf_counter() - start},
            "files": files,
            "versions": _versions(),
        }

    return work, describe_request
