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


def resolve_model(name_or_path: str | os.PathLike, option: str = "--model") -> str:
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
            raise ZeroconError(f"{option} {text}: expected a folder made by save_pretrained, got a file")
        return str(folder)
    return text


def missing_weights_error(
    name: str, exc: BaseException | None = None, option: str = "--model"
) -> ZeroconError:
    """The error for weights that are neither a local folder nor reachable on the hub / in the cache;
    ``option`` is the command-line option that named them (``--model`` or ``--captioner``)."""
    reason = f" ({str(exc).strip().splitlines()[0]})" if exc is not None and str(exc).strip() else ""
    what = "captioner" if option == "--captioner" else "model"
    way_out = (
        "--captioner none with --caption TEXT or --source WORD to edit without one"
        if option == "--captioner"
        else "--model shapes for the bundled offline model"
    )
    return ZeroconError(
        f"cannot load {what} '{name}' ({option}): not a local folder and not in the Hugging Face cache, and the "
        f"hub is unreachable{reason}. Download it where you have a network (e.g. 'huggingface-cli download "
        f"{name} --local-dir DIR') and pass {option} DIR, or use {way_out}"
    )


def set_edit_defaults(model: str | os.PathLike, **settings: object) -> Path:
    """Make ``settings`` (keys of :data:`zerocon.edit.config.EDIT_DEFAULTS`, e.g. ``guidance_scale``,
    ``patch_nce_weight``) the editor's own defaults for a local pipeline folder: they are written into its
    model_index.json's ``edit_defaults``, which ``zerocon edit``, the web app and ShapesBench read."""
    import json

    from zerocon.edit.config import EDIT_DEFAULTS
    from zerocon.io import write_json

    unknown = sorted(set(settings) - set(EDIT_DEFAULTS))
    if unknown:
        raise ZeroconError(
            f"unknown edit setting(s) {', '.join(unknown)} (known: {', '.join(EDIT_DEFAULTS)})"
        )
    index_file = Path(resolve_model(model)) / "model_index.json"
    if not index_file.is_file():
        raise ZeroconError(f"a local pipeline folder with a model_index.json is needed, not {str(model)!r}")
    if "patch_nce_weight" in settings and "patch_nce_scale" not in settings:
        settings["patch_nce_scale"] = EDIT_DEFAULTS["patch_nce_scale"]  # a weight means nothing without it
    index = json.loads(index_file.read_text())
    index["edit_defaults"] = {**(index.get("edit_defaults") or {}), **settings}
    write_json(index_file, index)
    return index_file
