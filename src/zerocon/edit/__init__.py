"""Zero-shot real-image editing with a latent diffusion model: pix2pix-zero and pix2pix-zeroCon.

The public names are imported lazily (``from zerocon.edit import ZeroConPipeline``) so that importing the
package does not load diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ZeroConPipeline": "zerocon.edit.pipeline",
    "EditConfig": "zerocon.edit.config",
    "EditResult": "zerocon.edit.outputs",
    "Inversion": "zerocon.edit.outputs",
    "METHODS": "zerocon.edit.config",
    "PatchNCEGuidance": "zerocon.edit.config",
    "EditDirection": "zerocon.edit.directions",
    "automatic_direction": "zerocon.edit.directions",
    "direction_from_files": "zerocon.edit.directions",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zerocon.edit' has no attribute {name!r}")


__all__ = list(_LAZY)
