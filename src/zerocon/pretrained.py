"""Strict loading of pretrained weights: a checkpoint that does not fill the network exactly is an error.

When a checkpoint lacks some of a model's weights, transformers' and diffusers' ``from_pretrained`` leave
those weights at their random initialisation and only log a warning; weights the model has no place for are
dropped the same way. A metric or an edit computed with such a partly random network is a wrong result that
looks like a right one. Every pretrained network the project loads therefore goes through this module:

* :func:`from_pretrained_strict` — ``cls.from_pretrained(location, output_loading_info=True)`` for a
  transformers or diffusers class, then :func:`check_loading_info` on the loading report;
* :func:`load_state_dict_strict` — a plain ``torch.nn.Module`` filled from a state dict (the LPIPS backbone,
  the Inception network), read without running code from the file by :func:`read_state_dict`.

A mismatch raises :class:`~zerocon.errors.ZeroconError` with one line naming the network and the first few
missing / unexpected / wrongly shaped weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zerocon.errors import ZeroconError

SHOWN_KEYS = 3
"""How many weight names of each kind the error message lists."""


def _names(keys: Iterable[Any]) -> list[str]:
    # transformers and diffusers report a mismatched key as (name, checkpoint shape, model shape)
    return sorted({str(k[0]) if isinstance(k, (tuple, list)) else str(k) for k in keys})


def _listing(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_KEYS]) + (", …" if len(names) > SHOWN_KEYS else "")
    return f"{kind} {len(names)}: {shown}"


def weights_mismatch_error(
    what: str,
    model: str,
    missing: Iterable[Any] = (),
    unexpected: Iterable[Any] = (),
    mismatched: Iterable[Any] = (),
) -> ZeroconError | None:
    """The error for a checkpoint that does not fit ``model`` (a class name), or None when it fits.

    ``what`` names the network for the user (e.g. ``"--clip DIR (CLIP)"``).
    """
    parts = []
    for kind, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", mismatched),
    ):
        names = _names(keys)
        if names:
            parts.append(_listing(kind, names))
    if not parts:
        return None
    return ZeroconError(
        f"{what}: the checkpoint does not match {model} (weights {'; '.join(parts)}); refusing to use a "
        "partly random network: give a checkpoint saved from this exact architecture"
    )


def check_loading_info(
    info: Mapping[str, Any], what: str, model: str, allow_missing: tuple[str, ...] = ()
) -> None:
    """Raise :func:`weights_mismatch_error` for a ``from_pretrained(..., output_loading_info=True)`` report.

    Missing weights whose names start with one of ``allow_missing`` are accepted: the caller states that the
    network's output it uses does not depend on them (e.g. the pooler of a ViT whose keys are read).
    """
    missing = [k for k in _names(info.get("missing_keys") or ()) if not k.startswith(allow_missing)]
    error = weights_mismatch_error(
        what,
        model,
        missing=missing,
        unexpected=info.get("unexpected_keys") or (),
        mismatched=info.get("mismatched_keys") or (),
    )
    if error is not None:
        raise error


def from_pretrained_strict(
    cls: Any,
    location: str | os.PathLike,
    what: str,
    allow_missing: tuple[str, ...] = (),
    **kwargs: Any,
) -> Any:
    """``cls.from_pretrained(location, **kwargs)`` that raises instead of leaving weights random or unused.

    ``cls`` is a transformers ``PreTrainedModel`` or diffusers ``ModelMixin`` class (both return the loading
    report with ``output_loading_info=True``); ``what`` names the network in the error.
    """
    model, info = cls.from_pretrained(location, output_loading_info=True, **kwargs)
    check_loading_info(info, what, type(model).__name__, allow_missing)
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``torch.save`` file read with ``weights_only=True`` (no code
    from the file runs). A ``{"state_dict": {...}}`` wrapper is unwrapped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if type(exc).__name__ != "UnpicklingError":  # pickle's, raised by the weights-only unpickler
            raise
        # torch's message advises weights_only=False, i.e. running the file's code; say what was refused instead
        raise ValueError(f"weights-only loading refused it: {_unpickler_reason(exc)}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"expected a state dict of tensors, got {type(state).__name__}")
    return dict(state)


def _unpickler_reason(exc: BaseException) -> str:
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return reason.split(". Please use", 1)[0].rstrip(".")


def load_state_dict_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], what: str, model_name: str | None = None
) -> None:
    """Fill ``module`` from ``state``; every weight must be present with its shape, and no other.

    ``what`` names the file for the user, ``model_name`` the network (default: the module's class). BatchNorm's
    ``num_batches_tracked`` counters may be absent (older files); they do not affect the output.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    error = weights_mismatch_error(what, model_name or type(module).__name__, missing, unexpected, mismatched)
    if error is not None:
        raise error
    module.load_state_dict(dict(state), strict=False)
