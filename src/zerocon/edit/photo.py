"""The editing recipe on a photo: load and resize, caption (BLIP), regularised DDIM inversion, the automatic
edit direction, the guided edit, and the outputs at the input's aspect ratio.

:class:`~zerocon.edit.pipeline.ZeroConPipeline` holds the diffusion steps (``invert`` and ``__call__``, with
diffusers' arguments); this module chains them the way the command line, the web app and ShapesBench use them.
Its entry points are also the pipeline's methods ``edit``, ``invert_image``, ``caption_image`` and
``prepare_image``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import PIL.Image
import torch

from zerocon.edit.config import EditConfig, check_method
from zerocon.edit.outputs import EditResult, Inversion
from zerocon.edit.schedulers import ddim_schedulers, describe_scheduler
from zerocon.errors import ZeroconError

if TYPE_CHECKING:
    from zerocon.edit.pipeline import ZeroConPipeline


def prepare_image(pipe: ZeroConPipeline, image: Any) -> tuple[PIL.Image.Image, tuple[int, int]]:
    """Load ``image`` (path or PIL; all bad-input errors from :func:`zerocon.images.load_image`) and resize
    it to the model's square size. Returns the resized image and the input's (width, height)."""
    from zerocon.images import load_image

    loaded = load_image(image)
    side = pipe.model_size
    return loaded.resize((side, side), PIL.Image.LANCZOS), loaded.size


def recipe_schedulers(pipe: ZeroConPipeline) -> tuple[Any, Any]:
    """The photo recipe's DDIM and DDIM-inversion schedulers with the checkpoint's noise schedule (see
    :mod:`zerocon.edit.schedulers`), whatever sampler the checkpoint ships."""
    return ddim_schedulers(pipe.scheduler, pipe.inverse_scheduler)


def caption_image(
    pipe: ZeroConPipeline, image: PIL.Image.Image, config: EditConfig, source: str | None = None
) -> str:
    """BLIP caption of ``image``; without a captioner, the template ``"a photo of a <source>"`` when
    ``config.template_caption`` allows it (see :func:`caption_source`), else a one-line error."""
    if pipe.has_captioner:
        return pipe.generate_caption(
            image, prefix=config.caption_prefix, max_new_tokens=config.caption_max_new_tokens
        )
    if source and config.template_caption:
        return f"a photo of a {source}"
    raise ZeroconError(
        "this model has no captioner (BLIP): give one (--captioner ID|DIR; Stable Diffusion repos hold "
        "none), or a caption (--caption), or --captioner none with a --source word for the template "
        "caption 'a photo of a <source>'"
    )


def caption_source(pipe: ZeroConPipeline, caption: str | None, config: EditConfig) -> str:
    """Where an inversion's caption comes from: ``"given"``, ``"captioner"`` or ``"template"``."""
    if caption is not None:
        return "given"
    return "captioner" if pipe.has_captioner or not config.template_caption else "template"


def invert_photo(
    pipe: ZeroConPipeline,
    image: Any,
    caption: str | None = None,
    source: str | None = None,
    config: EditConfig | None = None,
    inverse_scheduler: Any = None,
) -> Inversion:
    """Caption (unless given) and regularised DDIM inversion of a photo at the model's size, with the recipe's
    DDIM inversion unless ``inverse_scheduler`` is given."""
    config = config or EditConfig()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    resized, size = prepare_image(pipe, image)
    origin = caption_source(pipe, caption, config)
    if caption is None:
        show_stage(pipe, "caption")
        caption = caption_image(pipe, resized, config, source)
        timings["caption"] = time.perf_counter() - start
    caption = caption.strip()
    if not caption:
        raise ZeroconError("the caption is empty; pass a non-empty caption")
    start = time.perf_counter()
    show_stage(pipe, "inversion")
    latents = pipe.invert(
        caption,
        image=resized,
        num_inference_steps=config.num_inference_steps,
        generator=torch.Generator(device="cpu").manual_seed(config.seed),
        output_type="latent",
        lambda_auto_corr=config.lambda_auto_corr,
        lambda_kl=config.lambda_kl,
        num_reg_steps=config.num_reg_steps,
        num_auto_corr_rolls=config.num_auto_corr_rolls,
        allow_zero_roll=config.allow_zero_roll,
        inverse_scheduler=inverse_scheduler or recipe_schedulers(pipe)[1],
    ).latents
    timings["inversion"] = time.perf_counter() - start
    return Inversion(
        latents=latents, caption=caption, input_size=size, timings=timings, caption_source=origin
    )


def show_stage(pipe: ZeroConPipeline, desc: str) -> None:
    """Name the stage on the pipeline's progress bar, keeping its other settings (e.g. ``disable``)."""
    config = dict(getattr(pipe, "_progress_bar_config", {}) or {})
    pipe.set_progress_bar_config(**{**config, "desc": desc})


def edit_photo(
    pipe: ZeroConPipeline,
    image: Any,
    target: str | None = None,
    source: str | None = None,
    caption: str | None = None,
    direction: Any = None,
    config: EditConfig | None = None,
    inversion: Inversion | None = None,
) -> EditResult:
    """Edit a photo: caption -> regularised DDIM inversion -> reference pass -> guided edit -> decode.

    Args:
        image: a path or PIL image (converted to RGB, EXIF-rotated, resized to the model's size).
        target: ``"cat->dog"`` (word swap applied to the caption, with template banks), a target word
            with ``source``, or a full target sentence.
        source: the source word or sentence (optional).
        caption: the caption to use instead of BLIP's.
        direction: an :class:`~zerocon.edit.directions.EditDirection` (e.g. from sentence files) used
            instead of the automatic one; ``target`` may then be omitted.
        config: :class:`EditConfig` (method, steps, guidance, seed, ...).
        inversion: a previous :func:`invert_photo` result for this image and config (a cache hit).

    Returns an :class:`EditResult` whose images have the input's aspect ratio (longer side = model size).
    """
    from zerocon.edit.directions import EditDirection, automatic_direction, edited_caption, parse_target

    config = (config or EditConfig()).for_model(pipe.config)
    check_method(config.method)
    request = parse_target(target, source) if direction is None or target else None
    timings: dict[str, float] = {}
    resized, size = prepare_image(pipe, image)
    if inversion is None:
        inversion = invert_photo(
            pipe, resized, caption=caption, source=request.source if request else None, config=config
        )
        inversion = replace(inversion, input_size=size)
    timings.update(inversion.timings)
    caption = inversion.caption

    start = time.perf_counter()
    if direction is None:
        direction = automatic_direction(
            pipe, caption, request.target, request.source, use_templates=config.use_templates
        )
    elif not isinstance(direction, EditDirection):
        raise TypeError("direction must be an EditDirection")
    timings["direction"] = time.perf_counter() - start

    start = time.perf_counter()
    out, scheduler = guided_edit(pipe, caption, direction, inversion.latents, config)
    timings["edit"] = time.perf_counter() - start
    out_size = output_size(size, pipe.model_size)
    return EditResult(
        edit=out.images[0].resize(out_size, PIL.Image.LANCZOS),
        reconstruction=out.reconstruction[0].resize(out_size, PIL.Image.LANCZOS),
        caption=caption,
        edited_caption=edited_caption(caption, request) if request else "",
        direction=direction,
        timings=timings,
        inverted_latents=inversion.latents,
        caption_source=inversion.caption_source,
        scheduler=describe_scheduler(scheduler, pipe.scheduler),
    )


def guided_edit(
    pipe: ZeroConPipeline,
    caption: str,
    direction: Any,
    latents: torch.Tensor,
    config: EditConfig,
    scheduler: Any = None,
) -> tuple[Any, Any]:
    """The reference and guided edit passes from inverted ``latents`` with the caption also as negative prompt
    and the recipe's DDIM sampler unless ``scheduler`` is given: the pipeline's output and the sampler."""
    show_stage(pipe, f"edit ({config.method})")
    device = pipe._execution_device
    scheduler = scheduler or recipe_schedulers(pipe)[0]
    out = pipe(
        caption,
        source_embeds=direction.source_embeds.to(device),
        target_embeds=direction.target_embeds.to(device),
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        negative_prompt=caption,
        generator=torch.Generator(device="cpu").manual_seed(config.seed + 1),
        latents=latents.to(device),
        cross_attention_guidance_amount=config.cross_attention_guidance_amount,
        output_type="pil",
        method=config.method,
        patch_nce=config.patch_nce,
        return_reconstruction=True,
        scheduler=scheduler,
    )
    return out, scheduler


def output_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    from zerocon.images import fit_size

    return fit_size(size, side, multiple=1)
