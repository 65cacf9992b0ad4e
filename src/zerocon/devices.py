"""Which device and dtype a command runs on: ``auto`` picks CUDA, then Apple's MPS, then the CPU, and half
precision (float16) on CUDA only; anything else is what the user named, checked here."""

from __future__ import annotations

from typing import Any

from zerocon.errors import ZeroconError

DEVICES = ("auto", "cpu", "cuda", "mps")
"""The values ``--device`` documents; ``cuda:N`` is accepted too."""
DTYPES = ("auto", "float32", "float16", "bfloat16")
"""The values of ``--dtype``; ``auto`` is float16 on CUDA and float32 elsewhere."""


def resolve_device(name: str) -> Any:
    """The ``torch.device`` for ``name``; an unknown or unavailable one is a one-line error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ZeroconError(f"--device {name}: not a torch device ({str(exc).splitlines()[0]})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ZeroconError(f"--device {name}: CUDA is not available here (use --device auto or cpu)")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ZeroconError(f"--device {name}: MPS is not available here (use --device auto or cpu)")
    return device


def resolve_dtype(name: str, device: Any) -> Any:
    """The ``torch.dtype`` for ``name`` on ``device`` (``auto``: float16 on CUDA, float32 elsewhere)."""
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ZeroconError(f"--dtype {name}: choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)
