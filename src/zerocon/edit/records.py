"""An edit's output folder and its ``record.json``, written the same way by ``zerocon edit`` and the web app.

:func:`write_edit_folder` writes ``edit.png``, ``reconstruction.png``, ``comparison.png`` (input |
reconstruction | edit; the web app also keeps ``input.png``) and ``record.json``, whose keys are
:data:`RECORD_KEYS`: what was edited and how (``input``, ``model``, ``method``, ``target``, ``source``,
``seed``, ``settings``: every :class:`~zerocon.edit.config.EditConfig` field as resolved for the model), what
came out (``caption``, ``caption_source``, ``edited_caption``, ``direction``, ``scheduler``, ``input_size``,
``output_size``, ``files``), where and how fast (the runtime keys of :func:`describe_runtime`, ``timings_seconds``,
``inversion_cache_hit``, ``versions``) and ``request_key``, the digest of the input's bytes and of the
request (:func:`describe_request`) that lets ``zerocon edit`` keep a finished folder on a re-run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNTIME_KEYS = ("device", "dtype", "captioner", "cpu_offload", "vae_slicing", "vae_tiling", "process")
"""Where and how an input was processed (see :func:`describe_runtime`)."""

RECORD_KEYS = (
    "input", "model", "method", "target", "source", "caption", "caption_source", "edited_caption",
    "direction", "scheduler", *RUNTIME_KEYS, "seed", "settings", "inversion_cache_hit", "input_size",
    "output_size", "timings_seconds", "files", "versions", "request_key",
)  # fmt: skip
"""The keys of an edit's ``record.json``, from the command line and from the web app alike."""


def versions() -> dict[str, str]:
    """The versions of zerocon and of the libraries an output depends on."""
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


def captioner_name(pipe: Any, captioner: str, model: str) -> str | None:
    """The captioner ``pipe`` captions with, for records and cache keys: ``None`` without one, the name given
    (``--captioner``), ``MODEL/caption_generator`` for the model's own, else the default BLIP."""
    from zerocon.edit.captioning import DEFAULT_CAPTIONER

    if not pipe.has_captioner:
        return None
    if captioner not in ("auto", "none"):
        return captioner
    loaded_from = str(getattr(pipe.caption_generator, "name_or_path", "") or "")
    # the model's own BLIP is loaded from the pipeline's folder (older diffusers: its caption_generator/)
    own = Path(loaded_from).name == "caption_generator" or loaded_from == str(pipe.name_or_path or "")
    return f"{model}/caption_generator" if own else DEFAULT_CAPTIONER


def describe_runtime(
    pipe: Any,
    captioner: str | None,
    cpu_offload: bool = False,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    process: str = "0 of 1",
) -> dict[str, Any]:
    """The :data:`RUNTIME_KEYS` of a record: ``pipe``'s device and dtype, the captioner's name, the memory
    options and which process (of an ``accelerate launch``) made the output."""
    return {
        "device": str(pipe._execution_device),
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "captioner": captioner,
        "cpu_offload": cpu_offload,
        "vae_slicing": vae_slicing,
        "vae_tiling": vae_tiling,
        "process": process,
    }


def request_runtime(runtime: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``runtime`` an output depends on (not which process or which GPU of several made it)."""
    return {
        "device": runtime["device"].split(":")[0],
        "dtype": runtime["dtype"],
        "captioner": runtime["captioner"],
    }


def describe_request(
    command: str,
    model_key: str,
    settings: dict[str, Any],
    runtime: dict[str, Any],
    caption: str | None,
    source: str | None,
    **fields: Any,
) -> dict[str, Any]:
    """Everything an output depends on besides the input's bytes (``edit``: + target and direction;
    ``invert``: + reconstruct and guidance scale)."""
    return {
        "command": command,
        "model": model_key,
        "settings": settings,
        "caption": caption,
        "source": source,
        "runtime": request_runtime(runtime),
        **fields,
    }


def request_key(input_digest: str, request: dict[str, Any]) -> str:
    """SHA-256 of the input's digest (:func:`zerocon.edit.cache.bytes_digest`) and of ``request``."""
    digest = hashlib.sha256(bytes.fromhex(input_digest))
    digest.update(json.dumps(request, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (paths and other objects become strings)."""
    return json.loads(json.dumps(value, default=str))


@dataclass
class EditOutput:
    """What one edit's folder records, besides the images of ``result``."""

    input: str
    """The input's name: its path (command line) or the uploaded file's name (web app)."""
    image: Any
    """The input as loaded (RGB PIL image)."""
    result: Any
    """The :class:`~zerocon.edit.outputs.EditResult`."""
    model: str
    config: Any
    """The :class:`~zerocon.edit.config.EditConfig` used, resolved for the model."""
    target: str | None
    source: str | None
    runtime: dict[str, Any]
    inversion_cache_hit: bool
    request_key: str
    started: float
    """``time.perf_counter()`` when the work on this input began (``timings_seconds["total"]`` ends at the
    record)."""


def edit_record(output: EditOutput, files: list[str]) -> dict[str, Any]:
    """The ``record.json`` of an edit (keys: :data:`RECORD_KEYS`)."""
    result, config = output.result, output.config
    timings = {**result.timings, "total": time.perf_counter() - output.started}
    return {
        "input": output.input,
        "model": output.model,
        "method": config.method,
        "target": output.target,
        "source": output.source,
        "caption": result.caption,
        "caption_source": result.caption_source,
        "edited_caption": result.edited_caption,
        "direction": json_safe(result.direction.describe()),
        "scheduler": json_safe(result.scheduler),
        **output.runtime,
        "seed": config.seed,
        "settings": json_safe(dataclasses.asdict(config)),
        "inversion_cache_hit": output.inversion_cache_hit,
        "input_size": list(output.image.size),
        "output_size": list(result.edit.size),
        "timings_seconds": {name: round(float(seconds), 3) for name, seconds in timings.items()},
        "files": files,
        "versions": versions(),
        "request_key": output.request_key,
    }


def write_edit_folder(
    folder: Path, output: EditOutput, keep_input: bool = False
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write an edit's images and ``record.json`` into ``folder`` (each file atomically).

    ``keep_input`` also writes the input as ``input.png``. Returns the record and the written files by kind
    (``input``, ``edit``, ``reconstruction``, ``comparison``, ``record``).
    """
    from zerocon.images import side_by_side
    from zerocon.io import save_image_atomic, write_json

    folder = Path(folder)
    result = output.result
    images = {
        "input": output.image if keep_input else None,
        "edit": result.edit,
        "reconstruction": result.reconstruction,
        "comparison": side_by_side(
            [output.image, result.reconstruction, result.edit], ["input", "reconstruction", "edit"]
        ),
    }
    files: dict[str, Path] = {}
    for kind, image in images.items():
        if image is not None:
            files[kind] = folder / f"{kind}.png"
            save_image_atomic(image, files[kind])
    record = edit_record(output, [path.name for path in files.values()])
    files["record"] = folder / "record.json"
    write_json(files["record"], record)
    return record, files
