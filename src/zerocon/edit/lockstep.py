"""The lock-step edit: the reference pass and the guided edit pass of pix2pix-zero / pix2pix-zeroCon.

The reference pass denoises the inversion with the caption's embeddings and records, at every timestep, the
cross-attention maps (and the decoder self-attention features of PatchNCE) in an
:class:`~zerocon.edit.attention.AttentionBook`. The edit pass denoises the same latent with the edited
embeddings; before each of its steps the latent takes one gradient step on the guidance losses, which compare
its maps and features with the reference's at the same timestep.

For deterministic schedulers the two passes run in lock-step, so only one timestep's maps are alive at a time,
and the edit's no-grad UNet call at step t is batched with the reference pass's call at step t+1
(:func:`fused_forward`). A scheduler that draws noise gets the whole reference pass first, as in diffusers, so
the generator is consumed in the same order (:func:`reference_pass`).

Everything the steps share is a :class:`LockstepState`; the steps are plain functions of it (in the style of
k-diffusion's samplers), and :func:`run_lockstep_edit` runs the whole loop. The caller installs the attention
processors (:func:`~zerocon.edit.attention.installed_processors`) and disables gradients around it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from zerocon.edit.attention import AttentionBook, StopForward
from zerocon.edit.config import PatchNCEGuidance
from zerocon.edit.guidance import guidance_gradient, patch_nce_guidance_loss
from zerocon.errors import ZeroconError

UNetCall = Callable[[torch.Tensor, Any, torch.Tensor, dict[str, Any]], torch.Tensor]
"""``(sample, timestep, embeddings, cross_attention_kwargs) -> noise`` in the sample's dtype
(:meth:`ZeroConPipeline._unet <zerocon.edit.pipeline.ZeroConPipeline._unet>`)."""
StepHook = Callable[[int, Any, torch.Tensor], None]
"""Called after each edit step with the loop index, the timestep and the edited latent."""


def combine_cfg(noise: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance from a batch ordered (unconditional, conditional)."""
    noise_uncond, noise_text = noise.chunk(2)
    return noise_uncond + guidance_scale * (noise_text - noise_uncond)


def check_finite(latents: torch.Tensor, stage: str, index: int, timestep: Any) -> None:
    """Raise :class:`ZeroconError` when a step of ``stage`` made the latent NaN/Inf."""
    if not torch.isfinite(latents).all():
        advice = (
            "lower cross_attention_guidance_amount / the PatchNCE weight (v-prediction models need ~0.01) or "
            if stage == "edit"
            else ""
        )
        raise ZeroconError(
            f"the latent became NaN/Inf at {stage} step {index} (t={int(timestep)}); {advice}use float32"
        )


def scheduler_draws_noise(scheduler: Any, eta: float) -> bool:
    """Whether ``scheduler.step`` consumes the generator (then the two passes cannot be interleaved without
    changing which random numbers each pass receives)."""
    params = set(inspect.signature(scheduler.step).parameters)
    if "generator" not in params:
        return False
    name = type(scheduler).__name__
    if name == "DDIMScheduler":
        return eta > 0
    return name not in ("PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler")


@dataclass
class LockstepState:
    """What the steps of the reference and the edit pass share.

    Attributes:
        unet: the pipeline's UNet call (float32 latents in and out, the network in its own dtype).
        reference_scheduler, edit_scheduler: one scheduler per trajectory (schedulers may keep state).
        reference_embeds: the prompt's embeddings, ordered (negative, prompt) with CFG.
        edit_embeds: the same with the edit direction added to the conditional half.
        num_cond: rows of the conditional half.
        book: the attention processors' record (reference maps and features, the guided pass's losses).
        unet_kwargs: the caller's ``cross_attention_kwargs`` (the book is added to each call).
        guidance_scale, do_cfg: classifier-free guidance (``do_cfg``: scale > 1).
        halves_equal: both CFG halves of the reference pass see the same text (negative prompt = caption),
            so one half is computed and reused.
        extra_step_kwargs: the schedulers' ``step`` arguments (``eta``, ``generator``).
        device: where the timesteps of a batched call go.
        latent_hw: the latent's (height, width) (PatchNCE reshapes tokens to maps).
        use_xa, use_nce: cross-attention guidance (pix2pix-zero); PatchNCE guidance (zerocon, weight > 0).
        cross_attention_guidance_amount: the step size of the latent's guidance step.
        patch_nce, nce_generator: PatchNCE settings and the generator that samples its patches.
        guidance_stats: receives per-step gradient norms (see :func:`~zerocon.edit.guidance.guidance_gradient`).
        need_reference: the reference pass runs (guidance needs its record, or its result is wanted).
        lockstep: the scheduler draws no noise, so the passes may be interleaved.
    """

    unet: UNetCall
    reference_scheduler: Any
    edit_scheduler: Any
    reference_embeds: torch.Tensor
    edit_embeds: torch.Tensor
    num_cond: int
    book: AttentionBook
    unet_kwargs: dict[str, Any]
    guidance_scale: float
    do_cfg: bool
    halves_equal: bool
    extra_step_kwargs: dict[str, Any]
    device: Any
    latent_hw: tuple[int, int]
    use_xa: bool
    use_nce: bool
    cross_attention_guidance_amount: float
    patch_nce: PatchNCEGuidance
    nce_generator: torch.Generator | None
    guidance_stats: list[dict[str, float]] | None
    need_reference: bool
    lockstep: bool

    @property
    def fuse(self) -> bool:
        """Batch the edit's no-grad call at step t with the reference pass's call at step t+1."""
        return self.need_reference and self.lockstep


def new_state(
    unet: UNetCall,
    scheduler: Any,
    reference_embeds: torch.Tensor,
    edit_embeds: torch.Tensor,
    num_cond: int,
    *,
    method: str,
    guidance_scale: float,
    cross_attention_guidance_amount: float,
    patch_nce: PatchNCEGuidance,
    generator: torch.Generator | list[torch.Generator] | None,
    eta: float,
    extra_step_kwargs: dict[str, Any],
    unet_kwargs: dict[str, Any] | None,
    latent_hw: tuple[int, int],
    device: Any,
    return_reconstruction: bool = False,
    guidance_stats: list[dict[str, float]] | None = None,
) -> LockstepState:
    """The state of one edit with ``scheduler`` (its timesteps set; the edit pass gets a copy). PatchNCE
    without a ``patch_nce.seed`` draws its seed from ``generator`` here."""
    do_cfg = guidance_scale > 1.0
    use_xa = method in ("pix2pix_zero", "zerocon")
    use_nce = method == "zerocon" and patch_nce.weight > 0
    nce_generator = None
    if use_nce:
        seed = patch_nce.seed
        if seed is None:
            draw_from = generator[0] if isinstance(generator, list) else generator
            seed = int(torch.randint(0, 2**62, (1,), generator=draw_from).item())
        nce_generator = torch.Generator(device="cpu").manual_seed(seed)
    # With the real-image recipe (negative prompt = the caption) both CFG halves of the reference pass
    # get the same latent and the same text: compute one half and reuse it for the other.
    halves_equal = do_cfg and torch.equal(reference_embeds[:num_cond], reference_embeds[num_cond:])
    return LockstepState(
        unet=unet,
        reference_scheduler=scheduler,
        edit_scheduler=copy.deepcopy(scheduler),
        reference_embeds=reference_embeds,
        edit_embeds=edit_embeds,
        num_cond=num_cond,
        book=AttentionBook(want_maps=use_xa, want_features=use_nce, stop_early=use_xa),
        unet_kwargs=dict(unet_kwargs or {}),
        guidance_scale=guidance_scale,
        do_cfg=do_cfg,
        halves_equal=halves_equal,
        extra_step_kwargs=extra_step_kwargs,
        device=device,
        latent_hw=latent_hw,
        use_xa=use_xa,
        use_nce=use_nce,
        cross_attention_guidance_amount=cross_attention_guidance_amount,
        patch_nce=patch_nce,
        nce_generator=nce_generator,
        guidance_stats=guidance_stats,
        need_reference=use_xa or use_nce or return_reconstruction,
        lockstep=not scheduler_draws_noise(scheduler, eta),
    )


# ---------------------------------------------------------------------- the pieces of a step
def unet_call(state: LockstepState, x: torch.Tensor, t: Any, embeds: torch.Tensor, mode: str) -> torch.Tensor:
    """One UNet call with the book in ``mode`` (``"off"``, ``"record"`` or ``"compare"``)."""
    state.book.start(mode)
    return state.unet(x, t, embeds, {**state.unet_kwargs, "book": state.book})


def cfg(state: LockstepState, noise: torch.Tensor) -> torch.Tensor:
    """The guided noise from a CFG-doubled UNet output (unchanged without CFG)."""
    return combine_cfg(noise, state.guidance_scale) if state.do_cfg else noise


def expand(state: LockstepState, scheduler: Any, x: torch.Tensor, t: Any) -> torch.Tensor:
    """The scaled model input of ``x``, doubled for CFG."""
    return scheduler.scale_model_input(torch.cat([x] * 2) if state.do_cfg else x, t)


def reference_input(state: LockstepState, x: torch.Tensor, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference pass's UNet input and embeddings at ``t`` (one CFG half when both are equal)."""
    if state.halves_equal:
        return state.reference_scheduler.scale_model_input(x, t), state.reference_embeds[state.num_cond :]
    return expand(state, state.reference_scheduler, x, t), state.reference_embeds


def reference_finish(
    state: LockstepState, i: int, t: Any, x: torch.Tensor, raw: torch.Tensor
) -> torch.Tensor:
    """Scheduler step of the reference pass from the UNet output ``raw`` recorded for step ``i``."""
    book = state.book
    if state.halves_equal:
        for store in (book.reference_maps, book.reference_features):
            for name, value in store.items():
                store[name] = torch.cat([value, value])
        noise = raw
    else:
        noise = cfg(state, raw)
    x = state.reference_scheduler.step(noise, t, x, **state.extra_step_kwargs).prev_sample
    check_finite(x, "reference", i, t)
    return x


def reference_step(state: LockstepState, i: int, t: Any, x: torch.Tensor) -> torch.Tensor:
    """One whole step of the reference pass (recording its maps and features)."""
    model_input, embeds = reference_input(state, x, t)
    return reference_finish(state, i, t, x, unet_call(state, model_input, t, embeds, "record"))


def guide(state: LockstepState, t: Any, x: torch.Tensor) -> torch.Tensor:
    """The guided latent step: one gradient step of the losses on the CFG-doubled latent."""
    book, patch_nce = state.book, state.patch_nce
    x_in = expand(state, state.edit_scheduler, x, t).detach()
    nce_on = state.use_nce and patch_nce.active(t)
    xa_amount = state.cross_attention_guidance_amount if state.use_xa else 0.0
    if (state.use_xa and xa_amount != 0) or nce_on:
        x_var = x_in.clone().requires_grad_(True)
        with torch.enable_grad():
            try:
                unet_call(state, x_var, t, state.edit_embeds.detach(), "compare")
            except StopForward:
                pass  # everything after the last cross-attention layer is not needed for the losses
            nce = None
            if nce_on:
                nce = patch_nce_guidance_loss(
                    book.features, book.reference_features, state.latent_hw, patch_nce, state.nce_generator
                )
            xa = book.xa_loss if state.use_xa else None
            grad = guidance_gradient(xa, nce, x_var, patch_nce, state.guidance_stats)
            if grad is not None:
                x_in = x_in.add(grad, alpha=-xa_amount if state.use_xa else -1.0)
        book.features = {}
    return x_in


def edit_finish(
    state: LockstepState, i: int, t: Any, x_in: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Scheduler step of the edit pass from the guided input ``x_in`` and its UNet output ``noise``."""
    x = x_in.chunk(2)[0] if state.do_cfg else x_in
    x = state.edit_scheduler.step(cfg(state, noise), t, x, **state.extra_step_kwargs).prev_sample
    check_finite(x, "edit", i, t)
    return x


def fused_forward(
    state: LockstepState, t: Any, x_in: torch.Tensor, t_next: Any, reference_x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched UNet call: the edit's noise at step t (after guidance) and the reference pass's output at
    the next step (recorded). Both need no gradient; batching saves a pass's overhead."""
    book = state.book
    ref_in, ref_embeds = reference_input(state, reference_x, t_next)
    num_edit = x_in.shape[0]
    timesteps = torch.cat(
        [
            torch.as_tensor(t, device=state.device).reshape(1).expand(num_edit),
            torch.as_tensor(t_next, device=state.device).reshape(1).expand(ref_in.shape[0]),
        ]
    )
    book.start("record")
    book.record_from = num_edit
    try:
        out = state.unet(
            torch.cat([x_in, ref_in]),
            timesteps,
            torch.cat([state.edit_embeds, ref_embeds]),
            {**state.unet_kwargs, "book": book},
        )
    finally:
        book.record_from = 0
    return out[:num_edit], out[num_edit:]


# ---------------------------------------------------------------------- the loops
def reference_pass(
    state: LockstepState, x: torch.Tensor, timesteps: torch.Tensor
) -> tuple[torch.Tensor, dict[int, tuple[dict, dict]]]:
    """The whole reference pass first (a scheduler that draws noise: diffusers' order of draws). Returns its
    final latent and each step's recorded maps and features."""
    archive: dict[int, tuple[dict, dict]] = {}
    for i, t in enumerate(timesteps):
        x = reference_step(state, i, t, x)
        archive[i] = (dict(state.book.reference_maps), dict(state.book.reference_features))
    return x, archive


def run_lockstep_edit(
    state: LockstepState, latents: torch.Tensor, timesteps: torch.Tensor, on_step: StepHook | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference pass and the guided edit pass from ``latents`` over ``timesteps``. Returns the final
    edited and reference latents (the reference is ``latents`` unchanged when not ``state.need_reference``)."""
    book = state.book
    reference, edited = latents.clone(), latents.clone()
    archive: dict[int, tuple[dict, dict]] = {}
    if state.need_reference and not state.lockstep:
        reference, archive = reference_pass(state, reference, timesteps)
    pending: torch.Tensor | None = None  # the reference pass's UNet output for step i, from the fused call
    for i, t in enumerate(timesteps):
        if state.fuse:
            if pending is None:
                reference = reference_step(state, i, t, reference)
            else:
                reference = reference_finish(state, i, t, reference, pending)
        elif i in archive:
            book.reference_maps, book.reference_features = archive.pop(i)
        x_in = guide(state, t, edited)
        if state.fuse and i + 1 < len(timesteps):
            noise, pending = fused_forward(state, t, x_in, timesteps[i + 1], reference)
        else:
            noise = unet_call(state, x_in, t, state.edit_embeds, "off")
        edited = edit_finish(state, i, t, x_in, noise)
        if on_step is not None:
            on_step(i, t, edited)
    book.reference_maps.clear()
    book.reference_features.clear()
    return edited, reference
