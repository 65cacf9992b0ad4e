"""Loading an editor the way the command line and the web app do: model, captioner, device, dtype, memory."""

from __future__ import annotations

from typing import Any

from zerocon.errors import ZeroconError


def load_edit_pipeline(
    model: str,
    captioner: str = "auto",
    device: Any = "auto",
    dtype: str = "auto",
    need_captioner: bool = True,
    cpu_offload: bool = False,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
) -> Any:
    """A :class:`~zerocon.edit.pipeline.ZeroConPipeline` ready to edit.

    ``captioner``: ``"auto"`` (the model's own, else :data:`~zerocon.edit.captioning.DEFAULT_CAPTIONER`, loaded
    only when ``need_captioner``), ``"none"``, or a BLIP hub id / folder. ``device``: a name of
    :data:`zerocon.devices.DEVICES` or a ``torch.device``; ``dtype``: one of :data:`zerocon.devices.DTYPES`.
    ``cpu_offload`` keeps each model on the CPU until it runs (diffusers' model offload); ``vae_slicing`` /
    ``vae_tiling`` cut the VAE's memory.
    """
    from zerocon.devices import resolve_device, resolve_dtype
    from zerocon.edit.captioning import DEFAULT_CAPTIONER
    from zerocon.edit.pipeline import ZeroConPipeline

    device = resolve_device(device) if isinstance(device, str) else device
    torch_dtype = resolve_dtype(dtype, device)
    pipe = ZeroConPipeline.from_pretrained(
        model, captioner=None if captioner == "auto" else captioner, dtype=torch_dtype
    )
    if captioner == "auto" and not pipe.has_captioner and need_captioner:
        pipe.set_captioner(DEFAULT_CAPTIONER)
    try:
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise ZeroconError(f"device {device} is not usable here ({str(exc).splitlines()[0]})") from exc
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    return pipe
