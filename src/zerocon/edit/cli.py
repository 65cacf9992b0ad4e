"""``zerocon edit`` and ``zerocon invert``: the command-line face of :class:`ZeroConPipeline`.

For every input photo ``zerocon edit`` writes one folder ``OUT/<name>/`` holding ``edit.png``,
``reconstruction.png``, ``comparison.png`` (input | reconstruction | edit) and ``record.json`` (every setting,
the caption, the direction, the seed, timings: the schema of :mod:`zerocon.edit.records`, which the web app
writes too). The folder is assembled under a temporary name and renamed into place, so an interrupted or
failed input leaves nothing half-written. ``zerocon invert`` writes ``inversion.safetensors`` (x_T and the
caption) and ``record.json`` (and ``reconstruction.png`` with ``--reconstruct``).

Inversions are cached (safetensors) under ``--cache-dir`` keyed by the image bytes, the model and every
setting the inversion depends on (:class:`~zerocon.edit.cache.InversionCache`, shared with the web app), so
editing the same photo again skips the inversion. Each input is read and hashed once: the digest keys both its
inversion and its request. With several inputs, good ones are processed and bad ones are listed at the end;
the exit status is non-zero if any failed. An output folder whose record shows the same request is kept, so
running a command again after an interruption only does what is left.

Under ``accelerate launch -m zerocon.cli edit DIR ...`` the inputs are shared out by process rank (each
process on its own GPU); the main process prints one summary of every process's failures and every process
exits with the same status.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from zerocon.cli import option_with_old_name
from zerocon.edit.cache import (
    DEFAULT_CACHE,
    InversionCache,
    file_digest,
    inversion_cache_key,
    inversion_settings,
    model_key,
    write_inversion,
)
from zerocon.edit.captioning import DEFAULT_CAPTIONER
from zerocon.edit.config import (
    CROSS_ATTENTION_GUIDANCE_AMOUNT,
    EDIT_DEFAULTS,
    GRADIENT_SCALES,
    METHODS,
    NUM_PATCHES,
    EditConfig,
    PatchNCEGuidance,
    check_method,
)
from zerocon.edit.records import (
    EditOutput,
    captioner_name,
    describe_request,
    describe_runtime,
    request_key,
    versions,
    write_edit_folder,
)
from zerocon.errors import ZeroconError
from zerocon.io import staged_folder

DEFAULT_MODEL = os.environ.get("ZEROCON_MODEL", "shapes")
"""The model of ``--model``'s default: the bundled 64-px ShapesWorld toy (offline), unless ``ZEROCON_MODEL``
names another."""


def register(subparsers: Any, name: str) -> None:
    """Add the ``edit`` or ``invert`` sub-command."""
    from zerocon.cli import HelpFormatter

    if name == "edit":
        parser = _edit_parser(subparsers, HelpFormatter)
    elif name == "invert":
        parser = _invert_parser(subparsers, HelpFormatter)
    else:
        raise ValueError(f"zerocon.edit.cli registers 'edit' and 'invert', not {name!r}")
    _add_model_arguments(parser)
    _add_output_arguments(parser)
    _add_device_arguments(parser)
    parser.set_defaults(func=run_edit if name == "edit" else run_invert)


def _edit_parser(subparsers: Any, formatter: Any) -> argparse.ArgumentParser:
    """``zerocon edit``'s own arguments: the inputs, what to edit into what, and the guidance."""
    parser = subparsers.add_parser(
        "edit",
        formatter_class=formatter,
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
    _add_guidance_arguments(parser)
    return parser


def _add_guidance_arguments(parser: argparse.ArgumentParser) -> None:
    """``zerocon edit``'s guidance: classifier-free, cross-attention and PatchNCE. Each flag is named after its
    setting (``EditConfig.cross_attention_guidance_amount``, ``PatchNCEGuidance.weight`` ...); the older
    spellings (``--xa-guidance``, ``--nce-weight`` ...) are still accepted."""
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="CFG with the caption as negative (default: the model's edit_defaults, "
        f"{EDIT_DEFAULTS['guidance_scale']:g} for SD)",
    )
    option = option_with_old_name(parser)
    option(
        "--cross-attention-guidance-amount",
        "--xa-guidance",
        type=float,
        default=CROSS_ATTENTION_GUIDANCE_AMOUNT,
        help="step size of the latent's guidance step (0.01 for SD 2.x)",
    )
    option(
        "--patch-nce-weight",
        "--nce-weight",
        type=float,
        default=None,
        help="PatchNCE weight of zerocon (default: the model's edit_defaults, "
        f"{EDIT_DEFAULTS['patch_nce_weight']:g} on the {EDIT_DEFAULTS['patch_nce_scale']} scale for SD)",
    )
    option(
        "--patch-nce-scale",
        "--nce-scale",
        default=None,
        choices=GRADIENT_SCALES,
        help="what --patch-nce-weight multiplies: the PatchNCE gradient sized to the cross-attention "
        "gradient's norm (relative: the same meaning on every model) or the PatchNCE loss (absolute) "
        "(default: the model's edit_defaults, relative for SD)",
    )
    option(
        "--patch-nce-patches",
        "--nce-patches",
        type=int,
        default=NUM_PATCHES,
        help="PatchNCE patches per layer",
    )
    option(
        "--patch-nce-t-range",
        "--nce-t-range",
        type=int,
        nargs=2,
        default=(PatchNCEGuidance.t_min, PatchNCEGuidance.t_max),
        metavar=("TMIN", "TMAX"),
        help="timesteps at which the PatchNCE term is applied",
    )


def _invert_parser(subparsers: Any, formatter: Any) -> argparse.ArgumentParser:
    """``zerocon invert``'s own arguments: the inputs, the template caption's word, the reconstruction."""
    parser = subparsers.add_parser(
        "invert",
        formatter_class=formatter,
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
        help="CFG of the reconstruction (default: the model's edit_defaults, "
        f"{EDIT_DEFAULTS['guidance_scale']:g} for SD)",
    )
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, its captioner, the caption, the steps and the seed (both commands)."""
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
    parser.add_argument(
        "--steps", type=int, default=EditConfig.num_inference_steps, help="DDIM steps (inversion and edit)"
    )
    parser.add_argument(
        "--seed", type=int, default=EditConfig.seed, help="seed; the same seed gives the same image"
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The output folder, the inversion cache and the roll offsets (both commands)."""
    parser.add_argument("--out", type=Path, default=Path("zerocon-out"), help="output folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="inversion cache folder")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the inversion cache")
    parser.add_argument("--allow-zero-roll", action="store_true", help="diffusers' roll offsets (may be 0)")


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Device, dtype, memory options and progress bars (both commands)."""
    from zerocon.devices import DEVICES, DTYPES

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


# ---------------------------------------------------------------------- settings and validation
def _config(args: argparse.Namespace) -> Any:
    method = getattr(args, "method", METHODS[0])
    check_method(method)
    if args.steps < 1:
        raise ZeroconError(f"--steps must be at least 1, got {args.steps}")
    t_min, t_max = getattr(args, "patch_nce_t_range", (PatchNCEGuidance.t_min, PatchNCEGuidance.t_max))
    try:
        nce = PatchNCEGuidance(
            weight=getattr(args, "patch_nce_weight", None),
            num_patches=getattr(args, "patch_nce_patches", NUM_PATCHES),
            scale=getattr(args, "patch_nce_scale", None),
            t_min=t_min,
            t_max=t_max,
        )
    except ValueError as exc:
        raise ZeroconError(str(exc)) from exc
    return EditConfig(
        method=method,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        cross_attention_guidance_amount=getattr(
            args, "cross_attention_guidance_amount", CROSS_ATTENTION_GUIDANCE_AMOUNT
        ),
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
    return describe_runtime(
        pipe,
        captioner_name(pipe, args.captioner, args.model),
        cpu_offload=args.cpu_offload,
        vae_slicing=args.vae_slicing,
        vae_tiling=args.vae_tiling,
        process=f"{state.process_index} of {state.num_processes}",
    )


# ---------------------------------------------------------------------- cache
def _inversion(
    pipe: Any,
    args: argparse.Namespace,
    path: Path,
    digest: str,
    config: Any,
    model: str,
    source: str | None,
) -> tuple[Any, bool]:
    """Invert ``path`` (whose bytes hash to ``digest``) or take it from the cache; returns the inversion and
    whether it was a cache hit."""
    if pipe.has_captioner:
        source = None  # the caption comes from BLIP; the source word does not change the inversion
    settings = inversion_settings(
        pipe, config, args.caption, source, captioner_name(pipe, args.captioner, args.model)
    )

    def invert() -> Any:
        return pipe.invert_image(path, caption=args.caption, source=source, config=config)

    if args.no_cache:
        return invert(), False
    key = inversion_cache_key(digest, model, settings)
    return InversionCache(args.cache_dir).get(key, settings, invert)


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
    ``(work, request)``: ``request`` is the dict of everything the outputs depend on besides the input's bytes
    (:func:`~zerocon.edit.records.describe_request`), and ``work(path, staging, digest, key)`` fills a staging
    folder, its ``record.json`` holding the request key ``key``, for the input whose bytes hash to ``digest``
    (each input is read and hashed once). A folder whose record holds the same request key is skipped (a
    re-run after an interruption).
    """
    from accelerate.utils import gather_object

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
                digest = file_digest(path)
                key = request_key(digest, request)
                if _finished(folder, key):
                    skipped += 1
                    print(f"{path} -> {folder} (already done)", file=sys.stderr)
                    continue
                with staged_folder(folder) as staging:
                    work(path, staging, digest, key)
                done += 1
                print(f"{path} -> {folder}", file=sys.stderr)
            except ZeroconError as exc:
                own_failures.append(str(exc))
    results = gather_object([(done, skipped, own_failures)])
    _summarise(results, failures, verb, state.is_main_process)
    return 2 if failures or any(r[2] for r in results) else 0


def _summarise(results: list[Any], failures: list[str], verb: str, main_process: bool) -> None:
    """On the main process: how many inputs were kept, and every process's failures."""
    done = sum(r[0] for r in results)
    skipped = sum(r[1] for r in results)
    every_failure = failures + [message for r in results for message in r[2]]
    if not main_process:
        return
    if skipped:
        print(f"zerocon: {skipped} input(s) already done with these settings, kept", file=sys.stderr)
    if every_failure:
        total = done + skipped + len(every_failure)
        print(f"zerocon: {verb} {done + skipped} of {total} inputs; failed:", file=sys.stderr)
        for message in every_failure:
            print(f"  {message}", file=sys.stderr)


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


def _start(args: argparse.Namespace, config: Any) -> tuple[Any, Any, str, dict[str, Any]]:
    """What both commands load before their first input: the pipeline, the config resolved for its model
    (the record states every setting used), the model's key and the runtime."""
    pipe = _load_pipeline(args)
    return pipe, config.for_model(pipe.config), model_key(args.model), _runtime(pipe, args)


def _request(
    args: argparse.Namespace,
    command: str,
    model: str,
    settings: dict[str, Any],
    runtime: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """The request of ``command`` (:func:`~zerocon.edit.records.describe_request`) with the caption and
    source word of the command line."""
    return describe_request(command, model, settings, runtime, args.caption, args.source, **fields)


def run_edit(args: argparse.Namespace) -> int:
    config = _config(args)
    _validate_edit_request(args)
    found = _inputs_or_errors(args)
    if found is None:
        return 2
    paths, failures = found
    return _process_all(args, paths, failures, lambda: _edit_job(args, config), "edited")


def _given_direction(args: argparse.Namespace, pipe: Any) -> Any:
    """The direction of ``--direction`` or of the sentence files, else ``None`` (made from the target)."""
    from zerocon.edit.directions import EditDirection, direction_from_files

    if args.direction is not None:
        return EditDirection.load(args.direction)
    if args.source_sentences is not None:
        return direction_from_files(pipe, args.source_sentences, args.target_sentences)
    return None


def _edit_job(args: argparse.Namespace, config: Any) -> tuple[Any, dict[str, Any]]:
    from zerocon.edit.directions import parse_target
    from zerocon.images import load_image

    pipe, config, model, runtime = _start(args, config)
    direction = _given_direction(args, pipe)
    parsed = parse_target(args.target, args.source) if args.target else None
    source = parsed.source if parsed else None
    request = _request(
        args,
        "edit",
        model,
        dataclasses.asdict(config),
        runtime,
        target=args.target,
        direction=direction.describe() if direction is not None else None,
    )

    def work(path: Path, staging: Path, digest: str, key: str) -> None:
        start = time.perf_counter()
        inversion, hit = _inversion(pipe, args, path, digest, config, model, source)
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
        output = EditOutput(
            input=str(path),
            image=load_image(path),
            result=result,
            model=args.model,
            config=config,
            target=args.target,
            source=args.source,
            runtime=runtime,
            inversion_cache_hit=hit,
            request_key=key,
            started=start,
        )
        write_edit_folder(staging, output)

    return work, request


def run_invert(args: argparse.Namespace) -> int:
    config = _config(args)
    found = _inputs_or_errors(args)
    if found is None:
        return 2
    paths, failures = found
    return _process_all(args, paths, failures, lambda: _invert_job(args, config), "inverted")


def _reconstruct(pipe: Any, inversion: Any, config: Any, scheduler: Any) -> Any:
    """The input rebuilt from its inversion (the caption as prompt and negative, no edit), at its size."""
    import torch

    from zerocon.edit.photo import output_size, show_stage

    embeds = pipe.get_embeds([inversion.caption])
    show_stage(pipe, "reconstruction")
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
    return image.resize(output_size(inversion.input_size, pipe.model_size))


def _invert_job(args: argparse.Namespace, config: Any) -> tuple[Any, dict[str, Any]]:
    from zerocon.edit.schedulers import describe_scheduler
    from zerocon.io import save_image_atomic, write_json

    pipe, config, model, runtime = _start(args, config)
    scheduler, inverse_scheduler = pipe.recipe_schedulers()
    request = _request(
        args,
        "invert",
        model,
        config.inversion_key(),
        runtime,
        reconstruct=args.reconstruct,
        guidance_scale=config.guidance_scale,
    )

    def work(path: Path, staging: Path, digest: str, key: str) -> None:
        start = time.perf_counter()
        inversion, hit = _inversion(pipe, args, path, digest, config, model, args.source)
        _notices(path, inversion)
        write_inversion(staging / "inversion.safetensors", inversion, config.inversion_key())
        files = ["inversion.safetensors"]
        if args.reconstruct:
            save_image_atomic(
                _reconstruct(pipe, inversion, config, scheduler), staging / "reconstruction.png"
            )
            files.append("reconstruction.png")
        record = {
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
            "versions": versions(),
            "request_key": key,
        }
        write_json(staging / "record.json", record)

    return work, request
