"""``zerocon edit`` and ``zerocon invert``: the command-line face of :class:`ZeroConPipeline`.

For every input photo ``zerocon edit`` writes one folder ``OUT/<name>/`` holding ``edit.png``,
``reconstruction.png``, ``comparison.png`` (input | reconstruction | edit) and ``record.json`` (every setting,
the caption, the direction, the seed, timings). The folder is assembled under a temporary name and renamed
into place, so an interrupted or failed input leaves nothing half-written. ``zerocon invert`` writes
``inversion.safetensors`` (x_T and the caption) and ``record.json`` (and ``reconstruction.png`` with
``--reconstruct``).

Inversions are cached (safetensors) under ``--cache-dir`` keyed by the image bytes, the model and every
setting the inversion depends on, so editing the same photo again skips the inversion. With several inputs,
good ones are processed and bad ones are listed at the end; the exit status is non-zero if any failed.
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

from zerocon.errors import ZeroconError
from zerocon.io import staged_folder

DEFAULT_MODEL = os.environ.get("ZEROCON_MODEL", "shapes")
DEFAULT_CACHE = Path(os.environ.get("ZEROCON_CACHE", Path.home() / ".cache" / "zerocon" / "inversions"))


def register(subparsers: Any, name: str) -> None:
    """Add the ``edit`` or ``invert`` sub-command."""
    if name == "edit":
        parser = subparsers.add_parser(
            "edit",
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
        parser.add_argument(
            "--method", default="zerocon", help="zerocon (default), pix2pix_zero or word_swap"
        )
        parser.add_argument("--source-sentences", type=Path, default=None, help="file, one sentence a line")
        parser.add_argument("--target-sentences", type=Path, default=None, help="file, one sentence a line")
        parser.add_argument("--direction", type=Path, default=None, help="a saved direction (.safetensors)")
        parser.add_argument("--save-direction", type=Path, default=None, help="save the direction used here")
        parser.add_argument("--no-templates", action="store_true", help="no template sentence banks")
        parser.add_argument(
            "--guidance-scale",
            type=float,
            default=None,
            help="CFG with the caption as negative (default: the model's edit_defaults; 5 for SD)",
        )
        parser.add_argument(
            "--xa-guidance", type=float, default=0.1, help="cross-attention guidance step (0.01 for SD 2.x)"
        )
        parser.add_argument(
            "--nce-weight",
            type=float,
            default=None,
            help="PatchNCE weight of zerocon (default: the model's edit_defaults, else 1)",
        )
        parser.add_argument("--nce-patches", type=int, default=256, help="PatchNCE patches per layer")
        parser.add_argument("--nce-t-range", type=int, nargs=2, default=(0, 1000), metavar=("TMIN", "TMAX"))
    elif name == "invert":
        parser = subparsers.add_parser(
            "invert",
            help="regularised DDIM inversion of photos (cached for later edits)",
            description="Caption and invert photos with pix2pix-zero's regularised DDIM inversion.",
        )
        parser.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="photos or folders of photos")
        parser.add_argument("--source", default=None, help="describes the input when the model has no BLIP")
        parser.add_argument("--reconstruct", action="store_true", help="also write reconstruction.png")
        parser.add_argument(
            "--guidance-scale",
            type=float,
            default=None,
            help="CFG of the reconstruction (default: the model's)",
        )
    else:
        raise ValueError(f"zerocon.edit.cli registers 'edit' and 'invert', not {name!r}")
    parser.add_argument("--caption", default=None, help="use this caption instead of BLIP's")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id, local folder, or 'shapes' (bundled)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (inversion and edit)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same image")
    parser.add_argument("--out", type=Path, default=Path("zerocon-out"), help="output folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="inversion cache folder")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the inversion cache")
    parser.add_argument("--allow-zero-roll", action="store_true", help="diffusers' roll offsets (may be 0)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_edit if name == "edit" else run_invert)


# ---------------------------------------------------------------------- settings and validation
def _config(args: argparse.Namespace) -> Any:
    from zerocon.edit.guidance import PatchNCEGuidance
    from zerocon.edit.pipeline import METHODS, EditConfig

    method = getattr(args, "method", "zerocon")
    if method not in METHODS:
        raise ZeroconError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if args.steps < 1:
        raise ZeroconError(f"--steps must be at least 1, got {args.steps}")
    try:
        nce = PatchNCEGuidance(
            weight=getattr(args, "nce_weight", None),
            num_patches=getattr(args, "nce_patches", 256),
            t_min=getattr(args, "nce_t_range", (0, 1000))[0],
            t_max=getattr(args, "nce_t_range", (0, 1000))[1],
        )
    except ValueError as exc:
        raise ZeroconError(str(exc)) from exc
    return EditConfig(
        method=method,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        cross_attention_guidance_amount=getattr(args, "xa_guidance", 0.1),
        patch_nce=nce,
        allow_zero_roll=args.allow_zero_roll,
        use_templates=False if getattr(args, "no_templates", False) else None,  # None: the model's choice
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


def _load_pipeline(args: argparse.Namespace) -> Any:
    import torch

    from zerocon.edit.pipeline import ZeroConPipeline

    pipe = ZeroConPipeline.from_pretrained(args.model)
    try:
        pipe.to(torch.device(args.device))
    except (RuntimeError, AssertionError) as exc:
        raise ZeroconError(f"--device {args.device} is not usable here ({str(exc).splitlines()[0]})") from exc
    pipe.set_progress_bar_config(disable=args.quiet, leave=False, file=sys.stderr)
    return pipe


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
        return Inversion(latents=latents, caption=meta["caption"], input_size=tuple(json.loads(meta["size"])))
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
                "size": json.dumps(list(inversion.input_size)),
                "settings": json.dumps(settings, sort_keys=True, default=str),
            },
        )


def _inversion(
    pipe: Any, args: argparse.Namespace, path: Path, config: Any, model_key: str, source: str | None
) -> tuple[Any, bool]:
    """Invert ``path`` (or take it from the cache); returns the inversion and whether it was a cache hit."""
    if pipe.caption_generator is not None:
        source = None  # the caption comes from BLIP; the source word does not change the inversion
    settings = {**config.inversion_key(), "caption": args.caption, "source_if_no_blip": source}
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


def _process_all(
    args: argparse.Namespace, paths: list[Path], failures: list[str], work: Any, verb: str
) -> int:
    """Run ``work(path, staging_folder) -> dict`` for each input; publish good results; summarise."""
    args.out.mkdir(parents=True, exist_ok=True)
    done = 0
    for path, name in zip(paths, _unique_names(paths)):
        try:
            with staged_folder(args.out / name) as staging:
                work(path, staging)
            done += 1
            print(f"{path} -> {args.out / name}", file=sys.stderr)
        except ZeroconError as exc:
            failures.append(str(exc))
    if failures:
        print(f"zerocon: {verb} {done} of {done + len(failures)} inputs; failed:", file=sys.stderr)
        for message in failures:
            print(f"  {message}", file=sys.stderr)
        return 2
    return 0


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
def run_edit(args: argparse.Namespace) -> int:
    from zerocon.edit.directions import EditDirection, direction_from_files, parse_target
    from zerocon.images import load_image, side_by_side
    from zerocon.io import save_image_atomic, write_json

    config = _config(args)
    _validate_edit_request(args)
    paths, failures = _collect_inputs(args.inputs)
    paths = _check_images(paths, failures)
    if not paths:
        for message in failures:
            print(f"zerocon: error: {message}", file=sys.stderr)
        return 2
    pipe = _load_pipeline(args)
    config = config.for_model(pipe.config)  # the record states every setting used
    model_key = _model_key(args)
    direction = None
    if args.direction is not None:
        direction = EditDirection.load(args.direction)
    elif args.source_sentences is not None:
        direction = direction_from_files(pipe, args.source_sentences, args.target_sentences)
    request = parse_target(args.target, args.source) if args.target else None
    source = request.source if request else None

    def work(path: Path, staging: Path) -> None:
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
        write_json(
            staging / "record.json",
            {
                "input": str(path),
                "model": args.model,
                "method": config.method,
                "target": args.target,
                "source": args.source,
                "caption": result.caption,
                "edited_caption": result.edited_caption,
                "direction": result.direction.describe(),
                "seed": config.seed,
                "settings": dataclasses.asdict(config),
                "inversion_cache_hit": hit,
                "input_size": list(original.size),
                "output_size": list(result.edit.size),
                "timings_seconds": timings,
                "files": ["edit.png", "reconstruction.png", "comparison.png"],
                "versions": _versions(),
            },
        )

    return _process_all(args, paths, failures, work, "edited")


def run_invert(args: argparse.Namespace) -> int:
    import torch

    from zerocon.io import save_image_atomic, write_json

    config = _config(args)
    paths, failures = _collect_inputs(args.inputs)
    paths = _check_images(paths, failures)
    if not paths:
        for message in failures:
            print(f"zerocon: error: {message}", file=sys.stderr)
        return 2
    pipe = _load_pipeline(args)
    config = config.for_model(pipe.config)
    model_key = _model_key(args)

    def work(path: Path, staging: Path) -> None:
        start = time.perf_counter()
        inversion, hit = _inversion(pipe, args, path, config, model_key, args.source)
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
            ).images[0]
            from zerocon.edit.pipeline import _output_size

            image = image.resize(_output_size(inversion.input_size, pipe.model_size))
            save_image_atomic(image, staging / "reconstruction.png")
            files.append("reconstruction.png")
        write_json(
            staging / "record.json",
            {
                "input": str(path),
                "model": args.model,
                "caption": inversion.caption,
                "seed": config.seed,
                "settings": config.inversion_key(),
                "inversion_cache_hit": hit,
                "latent_shape": list(inversion.latents.shape),
                "timings_seconds": {**inversion.timings, "total": time.perf_counter() - start},
                "files": files,
                "versions": _versions(),
            },
        )

    return _process_all(args, paths, failures, work, "inverted")
