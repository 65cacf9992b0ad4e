"""The DDIM schedulers of the photo recipe, built from whatever scheduler a checkpoint ships.

pix2pix-zero inverts with DDIM and must denoise with DDIM: the inversion runs the DDIM update backwards, so
only the forward DDIM update retraces it. Stable Diffusion 1.4 / 1.5 ship a ``PNDMScheduler``, other repos
Euler or DPM-Solver; :func:`ddim_schedulers` keeps their noise schedule (betas, ``prediction_type``,
``steps_offset``, ``timestep_spacing``, ...) and swaps the sampler.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from diffusers import DDIMInverseScheduler, DDIMScheduler

# A sampler other than DDIM neither clips its sample nor forces the last alpha to 1 (Stable Diffusion's
# DDIM configs say the same); DDIM's own defaults for these two would change the trajectory.
_NON_DDIM_DEFAULTS = {"clip_sample": False, "set_alpha_to_one": False}


def _ddim_config(config: Mapping[str, Any], cls: type) -> dict[str, Any]:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kept = {k: v for k, v in dict(config).items() if k in accepted}
    if config.get("_class_name") not in ("DDIMScheduler", "DDIMInverseScheduler"):
        kept = {**_NON_DDIM_DEFAULTS, **kept}
    return kept


def ddim_schedulers(
    scheduler: Any, inverse_scheduler: Any = None
) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """A ``DDIMScheduler`` and a ``DDIMInverseScheduler`` with ``scheduler``'s noise schedule.

    A scheduler that is already DDIM is returned as is, and so is an ``inverse_scheduler`` that is already
    DDIM inversion; the others are built from ``scheduler.config`` (keys DDIM does not know, such as PNDM's
    ``skip_prk_steps``, are dropped).
    """
    config = scheduler.config
    forward = (
        scheduler
        if type(scheduler) is DDIMScheduler
        else DDIMScheduler.from_config(_ddim_config(config, DDIMScheduler))
    )
    inverse = (
        inverse_scheduler
        if type(inverse_scheduler) is DDIMInverseScheduler
        else DDIMInverseScheduler.from_config(_ddim_config(config, DDIMInverseScheduler))
    )
    return forward, inverse


def is_ddim(scheduler: Any, inverse: bool = False) -> bool:
    return type(scheduler) is (DDIMInverseScheduler if inverse else DDIMScheduler)


def describe_scheduler(used: Any, shipped: Any) -> dict[str, Any]:
    """What a record says about the sampler: its class, the checkpoint's class and the noise schedule."""
    config = used.config
    return {
        "class": type(used).__name__,
        "checkpoint_scheduler": type(shipped).__name__,
        **{
            key: config.get(key)
            for key in (
                "prediction_type",
                "beta_schedule",
                "beta_start",
                "beta_end",
                "steps_offset",
                "timestep_spacing",
                "clip_sample",
                "set_alpha_to_one",
            )
        },
    }
