"""Atomic file writing and safetensors checkpoints with an integrity manifest.

Every file the project writes goes to a temporary name in the same folder and is renamed into place, so a
crash never leaves a half-written file under its final name. A checkpoint is a folder holding one or more
``*.safetensors`` files, a ``config.json`` and a ``manifest.json`` with the SHA-256 of each file; loading
checks the manifest first, so a truncated or tampered checkpoint is rejected with a clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from zerocon.errors import ZeroconError

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def emit_report(report: dict[str, Any], out: str | os.PathLike | None = None) -> None:
    """A benchmark's result: printed as JSON on stdout and, when ``out`` is given, written there atomically."""
    if out is not None:
        write_json(out, report)
    print(json.dumps(report, indent=2))


def save_image_atomic(image: Any, path: str | os.PathLike, **save_kwargs: Any) -> None:
    """Save a PIL image atomically; the format is taken from ``path``'s suffix."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **save_kwargs)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    directory: str | os.PathLike,
    tensors: dict[str, dict[str, torch.Tensor]],
    config: dict[str, Any],
) -> Path:
    """Write ``{name}.safetensors`` for each group of tensors, ``config.json`` and the manifest.

    The folder is written under a temporary name and renamed, so ``directory`` is either the previous
    complete checkpoint or the new complete one, never a mixture.
    """
    directory = Path(directory)
    with staged_folder(directory) as staging:
        hashes = {}
        for name, group in tensors.items():
            file = staging / f"{name}.safetensors"
            save_file({k: v.detach().contiguous().cpu() for k, v in group.items()}, str(file))
            hashes[file.name] = sha256_file(file)
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        hashes["config.json"] = sha256_file(staging / "config.json")
        (staging / MANIFEST).write_text(json.dumps({"sha256": hashes}, indent=2, sort_keys=True) + "\n")
    return directory


@contextlib.contextmanager
def staged_folder(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder of ``final`` to fill; published onto ``final`` with :func:`publish_folder`
    when the block ends normally, removed (and ``final`` untouched) when it raises."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        publish_folder(staging, final)
    finally:
        if staging.exists():
            _rmtree(staging)


def publish_folder(staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the complete folder ``staging`` to ``final``, replacing an older ``final`` atomically.

    On Linux an existing ``final`` is swapped with ``staging`` in one ``renameat2(RENAME_EXCHANGE)`` and the
    old content removed afterwards, so ``final`` always names one complete folder. Elsewhere it takes two
    renames; a crash between them leaves the previous folder at ``.NAME.old`` (which :func:`load_checkpoint`
    falls back to).
    """
    staging, final = Path(staging), Path(final)
    os.chmod(staging, 0o755)  # mkdtemp creates 0700 folders
    old = _previous(final)
    if final.is_dir() and _exchange(staging, final):
        _rmtree(staging)  # holds the previous content now
        return
    if final.exists():
        if old.exists():
            _rmtree(old)
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        _rmtree(old)


def network_state(networks: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The state dict of network ``name`` in a checkpoint's ``networks`` tensors (keys ``"<name>.<param>"``)."""
    prefix = f"{name}."
    return {k[len(prefix) :]: v for k, v in networks.items() if k.startswith(prefix)}


def load_checkpoint(
    directory: str | os.PathLike,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Load a folder written by :func:`save_checkpoint`, verifying every file against the manifest."""
    directory = Path(directory)
    if not directory.is_dir() and (_previous(directory) / MANIFEST).is_file():
        directory = _previous(directory)  # a save was interrupted between its two renames
    if not directory.is_dir():
        raise ZeroconError(f"checkpoint not found: {directory} is not a folder")
    manifest_file = directory / MANIFEST
    if not manifest_file.is_file():
        raise ZeroconError(f"not a zerocon checkpoint: {directory} has no {MANIFEST}")
    try:
        hashes = json.loads(manifest_file.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ZeroconError(f"corrupt checkpoint: {manifest_file} is unreadable ({exc})") from exc
    for name, expected in hashes.items():
        file = directory / name
        if not file.is_file():
            raise ZeroconError(f"corrupt checkpoint: {file} is missing")
        if sha256_file(file) != expected:
            raise ZeroconError(
                f"corrupt checkpoint: {file} does not match its manifest (truncated or altered)"
            )
    tensors = {}
    for name in hashes:
        if name.endswith(".safetensors"):
            try:
                tensors[name.removesuffix(".safetensors")] = load_file(str(directory / name))
            except (SafetensorError, OSError) as exc:
                raise ZeroconError(f"corrupt checkpoint: cannot read {directory / name} ({exc})") from exc
    config = json.loads((directory / "config.json").read_text())
    return tensors, config


def _previous(directory: Path) -> Path:
    """Where :func:`save_checkpoint` parks the previous checkpoint while it renames the new one into place."""
    return directory.with_name(f".{directory.name}.old")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
