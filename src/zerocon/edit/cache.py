"""The inversion cache shared by ``zerocon edit`` / ``zerocon invert`` and the web app.

An inversion (x_T and the caption it was made with) costs as much as the edit itself, and editing the same
photo again with another target needs the same one. :class:`InversionCache` keeps each inversion as one
safetensors file in a folder, named by a key built from the SHA-256 of the image's bytes, the model's
identity (:func:`model_key`) and every setting the inversion depends on (:func:`inversion_settings`). Files
are written atomically (a temporary name, then a rename), so several processes or web-app jobs may share a
folder: a reader sees either no entry or a complete one. An entry that cannot be read is recomputed and
written again.

Nothing here imports torch at import time; the web app imports this module before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path(os.environ.get("ZEROCON_CACHE", Path.home() / ".cache" / "zerocon" / "inversions"))
"""The cache folder of ``--cache-dir`` (``zerocon edit`` / ``invert`` / ``ui``): ``ZEROCON_CACHE``, else
``~/.cache/zerocon/inversions``."""


def bytes_digest(data: bytes) -> str:
    """SHA-256 (hex) of an input's bytes: what both the inversion key and the request key start from."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """:func:`bytes_digest` of a file, reading it once."""
    return bytes_digest(Path(path).read_bytes())


def model_key(model: str) -> str:
    """A model's identity: its resolved location plus, for a folder, the size and mtime of every file (so a
    retrained model in the same folder is another model)."""
    from zerocon.models import resolve_model

    location = resolve_model(model)
    parts = [location]
    folder = Path(location)
    if folder.is_dir():
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                stat = file.stat()
                parts.append(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def inversion_settings(
    pipe: Any, config: Any, caption: str | None, source: str | None, captioner: str | None
) -> dict[str, Any]:
    """Everything an inversion by ``pipe`` with ``config`` depends on besides the image and the model.

    ``caption`` is the given caption (``None``: the captioner's or the template's); ``source`` matters only
    without a captioner (the template caption ``a photo of a SOURCE``); ``captioner`` names the captioner
    (:func:`zerocon.edit.records.captioner_name`).
    """
    return {
        **config.inversion_key(),
        "caption": caption,
        "source_if_no_blip": None if pipe.has_captioner else source,
        "captioner": captioner,
        "dtype": str(pipe.unet.dtype),
    }


def inversion_cache_key(image_digest: str, model: str, settings: dict[str, Any]) -> str:
    """The cache key of an inversion: SHA-256 of the image digest (:func:`bytes_digest`), the model key
    (:func:`model_key`) and the settings (:func:`inversion_settings`)."""
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(image_digest))
    digest.update(model.encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def write_inversion(path: str | os.PathLike, inversion: Any, settings: dict[str, Any]) -> None:
    """Save an :class:`~zerocon.edit.outputs.Inversion` as safetensors (x_T; caption, its source, the input
    size and ``settings`` as metadata), atomically."""
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


def read_inversion(path: str | os.PathLike) -> Any:
    """The inversion saved at ``path`` by :func:`write_inversion`, or ``None`` if it is absent or damaged.

    The file is read in one go and parsed from memory: x_T and the metadata always come from the same version
    of the file, even while another process replaces it (safetensors' ``safe_open`` reads the header from the
    open file but may map the tensors from the path again).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from zerocon.edit.outputs import Inversion

    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    try:
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
        latents = load(data)["latents"]
        width, height = json.loads(meta["size"])
        return Inversion(
            latents=latents,
            caption=meta["caption"],
            input_size=(int(width), int(height)),
            caption_source=meta.get("caption_source", "given"),
        )
    except (SafetensorError, KeyError, ValueError, TypeError, AttributeError):
        return None


class InversionCache:
    """A folder of inversions, one safetensors file per key (:func:`inversion_cache_key`)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def read(self, key: str) -> Any:
        """The cached inversion, or ``None`` (no entry, or a damaged one: it is recomputed by the caller)."""
        return read_inversion(self.path(key))

    def write(self, key: str, inversion: Any, settings: dict[str, Any]) -> bool:
        """Store an inversion atomically; a folder that cannot be written is a warning, not a failure."""
        try:
            write_inversion(self.path(key), inversion, settings)
        except OSError as exc:
            print(f"zerocon: warning: cannot write the inversion cache ({exc})", file=sys.stderr)
            return False
        return True

    def get(self, key: str, settings: dict[str, Any], invert: Callable[[], Any]) -> tuple[Any, bool]:
        """The inversion of ``key``: from the cache, else ``invert()`` stored under ``key``.

        Returns the inversion and whether it was a cache hit.
        """
        cached = self.read(key)
        if cached is not None:
            return cached, True
        inversion = invert()
        self.write(key, inversion, settings)
        return inversion, False
