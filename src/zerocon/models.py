"""Where pretrained weights come from: a hub id, a local folder, or a model bundled with the package.

The name ``shapes`` means the ShapesWorld models trained and shipped by this project
(``zerocon/assets/shapes``). Nothing here ever falls back to random weights: a name that cannot be found
raises :class:`~zerocon.errors.ZeroconError` saying how to give a local model.
"""

from __future__ import annotations

import os
from pathlib import Path

from zerocon.errors import ZeroconError

ASSETS = Path(__file__).resolve().parent / "assets"
SHAPES_DIR = ASSETS / "shapes"
"""The ShapesWorld bundle: ``pipeline/`` (a ZeroConPipeline folder), ``clip/`` (a CLIPModel + processor),
``oracle/`` and ``metrics.json``."""

BUNDLED = {"shapes": SHAPES_DIR / "pipeline", "shapes-clip": SHAPES_DIR / "clip"}


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Return a local folder or hub id for ``from_pretrained``; bundled names map to their folder.

    A local folder is returned as is. Anything else is treated as a hub id and must be in the local Hugging
    Face cache when the hub is unreachable; :func:`missing_weights_error` builds the message for that case.
    """
    text = str(name_or_path)
    if text in BUNDLED:
        folder = BUNDLED[text]
        if not folder.is_dir():
            raise ZeroconError(
                f"the bundled model '{text}' is not installed at {folder}; run 'zerocon shapes train'"
            )
        return str(folder)
    if Path(text).expanduser().exists():
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise ZeroconError(f"--model {text}: expected a folder made by save_pretrained, got a file")
        return str(folder)
    return text


def missing_weights_error(name: str, exc: BaseException | None = None) -> ZeroconError:
    """The error for weights that are neither a local folder nor reachable on the hub / in the cache."""
    reason = f" ({str(exc).strip().splitlines()[0]})" if exc is not None and str(exc).strip() else ""
    return ZeroconError(
        f"cannot load model '{name}': not a local folder and not in the Hugging Face cache, and the hub is "
        f"unreachable{reason}. Download it where you have a network (e.g. 'huggingface-cli download {name} "
        f"--local-dir DIR') and pass --model DIR, or use --model shapes for the bundled offline model"
    )
