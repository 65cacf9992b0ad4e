"""ZeroConPipeline: zero-shot real-image editing with a Stable Diffusion checkpoint (pix2pix-zero and
pix2pix-zeroCon), a drop-in replacement for diffusers' deprecated ``StableDiffusionPix2PixZeroPipeline``.

``invert(...)`` and ``__call__(...)`` accept every argument of that pipeline's methods with the same meaning
and defaults; ``method="pix2pix_zero"`` gives the same latents (checked by ``tests/edit/test_parity.py``).
What differs is how the work is done:

* the reference pass (which records the cross-attention maps) and the guided edit pass run in lock-step, so
  only one timestep's maps are alive at a time instead of all of them copied to the CPU; the edit's no-grad
  UNet call at step t and the reference pass's call at step t+1 are one batched call;
* with the real-image recipe (negative prompt = caption) the two identical CFG halves of the reference pass
  are computed once; the guided pass stops after the last cross-attention layer (the losses need no more);
* probabilities are materialised only for ``attn2`` layers in the passes that need them; every other attention
  call keeps the UNet's fast attention (scaled-dot-product by default);
* gradients are taken for the latent only (no weight gradients), and the inversion does not record maps;
* the inversion's noise regularisation is vectorised over images and channels.

``method="zerocon"`` (the default) adds PatchNCE guidance on decoder self-attention features
(:class:`~zerocon.edit.guidance.PatchNCEGuidance`) to the cross-attention guidance in the same backward pass;
``method="word_swap"`` edits the embeddings without any guidance. :meth:`ZeroConPipeline.edit` runs the whole
recipe on a photo: caption -> regularised DDIM inversion -> reference pass -> guided edit -> decode.

The lock-step loop itself is :mod:`zerocon.edit.lockstep`; the settings (:class:`EditConfig`, :data:`METHODS`,
:data:`EDIT_DEFAULTS`) live in the torch-free :mod:`zerocon.edit.config` and the output types in
:mod:`zerocon.edit.outputs`; all are importable from here too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    DDIMInverseScheduler,
    DiffusionPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from transformers import BlipForConditionalGeneration, BlipProcessor, CLIPTextModel, CLIPTokenizer

from zerocon.edit import photo
from zerocon.edit.attention import installed_processors
from zerocon.edit.config import (
    CROSS_ATTENTION_GUIDANCE_AMOUNT,
    EDIT_DEFAULTS,
    METHODS,
    EditConfig,
    PatchNCEGuidance,
    check_method,
    patch_nce_for_model,
)
from zerocon.edit.inversion import regularize_noise
from zerocon.edit.lockstep import check_finite, combine_cfg, new_state, run_lockstep_edit
from zerocon.edit.outputs import EditResult, Inversion, ZeroConInversionOutput, ZeroConPipelineOutput
from zerocon.edit.schedulers import ddim_schedulers, is_ddim
from zerocon.errors import ZeroconError

__all__ = [
    "EDIT_DEFAULTS",
    "METHODS",
    "EditConfig",
    "EditResult",
    "Inversion",
    "PatchNCEGuidance",
    "ZeroConInversionOutput",
    "ZeroConPipeline",
    "ZeroConPipelineOutput",
]


def _batch_size(prompt: str | list[str] | None, prompt_embeds: torch.Tensor | None) -> int:
    """Number of prompts, as diffusers pipelines count them (a string, a list, or embeddings)."""
    if isinstance(prompt, str):
        return 1
    if isinstance(prompt, list):
        return len(prompt)
    return prompt_embeds.shape[0]


def _completes_step(i: int, num_timesteps: int, num_warmup_steps: int, order: int) -> bool:
    """Whether loop index ``i`` ends a scheduler step (progress bar and callback), as in diffusers."""
    return i == num_timesteps - 1 or ((i + 1) > num_warmup_steps and (i + 1) % order == 0)


def _step_reporter(
    progress_bar: Any,
    callback: Callable[[int, int, torch.Tensor], None] | None,
    callback_steps: int,
    num_inference_steps: int,
    scheduler: Any,
    callback_scheduler: Any,
) -> Callable[[int, Any, torch.Tensor], None]:
    """What a diffusers loop does after index ``i`` of ``scheduler.timesteps``: advance the progress bar at
    the end of each scheduler step and call ``callback(i // callback_scheduler.order, t, latents)`` every
    ``callback_steps`` indices."""
    num_timesteps = len(scheduler.timesteps)
    num_warmup_steps = num_timesteps - num_inference_steps * scheduler.order
    order, callback_order = scheduler.order, getattr(callback_scheduler, "order", 1)

    def report(i: int, t: Any, latents: torch.Tensor) -> None:
        if _completes_step(i, num_timesteps, num_warmup_steps, order):
            progress_bar.update()
            if callback is not None and i % callback_steps == 0:
                callback(i // callback_order, t, latents)

    return report


def _check_call_inputs(
    prompt: Any, prompt_embeds: Any, source_embeds: Any, target_embeds: Any, callback_steps: Any
) -> None:
    """``__call__``'s argument checks (diffusers' messages)."""
    if not isinstance(callback_steps, int) or callback_steps <= 0:
        raise ValueError(f"`callback_steps` must be a positive integer, got {callback_steps!r}")
    if source_embeds is None or target_embeds is None:
        raise ValueError("`source_embeds` and `target_embeds` are both required")
    if (prompt is None) == (prompt_embeds is None):
        raise ValueError("give exactly one of `prompt` and `prompt_embeds`")
    if prompt is not None and not isinstance(prompt, (str, list)):
        raise ValueError(f"`prompt` must be a str or a list, got {type(prompt)}")


class ZeroConPipeline(DiffusionPipeline, StableDiffusionMixin):
    """Zero-shot image editing with pix2pix-zero / pix2pix-zeroCon on a Stable Diffusion 1.x/2.x checkpoint.

    Components are those of ``StableDiffusionPipeline`` plus the optional ``inverse_scheduler``
    (a ``DDIMInverseScheduler``, derived from ``scheduler``'s config when absent), ``caption_generator``
    (``BlipForConditionalGeneration``) and ``caption_processor`` (``BlipProcessor``) — the names diffusers'
    ``StableDiffusionPix2PixZeroPipeline`` uses.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    # BLIP's generate() bypasses the forward hooks of model offload: the captioner stays on the device
    _exclude_from_cpu_offload = ["caption_generator"]
    _optional_components = ["inverse_scheduler", "caption_generator", "caption_processor"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: Any,
        inverse_scheduler: DDIMInverseScheduler | None = None,
        caption_generator: BlipForConditionalGeneration | None = None,
        caption_processor: BlipProcessor | None = None,
        caption_prefix: str = "a photography of",
        edit_defaults: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if inverse_scheduler is None and scheduler is not None:
            inverse_scheduler = ddim_schedulers(scheduler)[1]
        for module in (vae, text_encoder, unet, caption_generator):
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            inverse_scheduler=inverse_scheduler,
            caption_generator=caption_generator,
            caption_processor=caption_processor,
        )
        # The BLIP text prompt belongs to the captioner: diffusers' recipe uses "a photography of"; a
        # captioner trained without a prompt (the ShapesWorld BLIP) saves "" in model_index.json.
        self.register_to_config(caption_prefix=caption_prefix)
        # So do the edit settings that depend on the model (see EDIT_DEFAULTS): pix2pix-zero's guidance scale 5
        # suits Stable Diffusion, the small ShapesWorld UNet needs less and its vocabulary has no template words.
        unknown = sorted(set(edit_defaults or {}) - set(EDIT_DEFAULTS))
        if unknown:
            raise ZeroconError(
                f"edit_defaults: unknown setting(s) {', '.join(unknown)} (known: {', '.join(EDIT_DEFAULTS)})"
            )
        self.register_to_config(edit_defaults=dict(edit_defaults or {}))
        self.vae_scale_factor = (
            2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        )
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: Any, captioner: str | None = None, **kwargs: Any
    ) -> ZeroConPipeline:
        """``DiffusionPipeline.from_pretrained`` for a hub id, a local folder or ``"shapes"`` (the bundled
        ShapesWorld model). A model that cannot be found raises :class:`ZeroconError` at once (never random
        weights).

        ``captioner`` is a shortcut for diffusers' ``caption_generator=`` / ``caption_processor=``: a BLIP hub
        id or folder loaded in the same ``dtype`` (diffusers' ``torch_dtype`` is accepted too) instead of the model's own captioner (e.g.
        :data:`~zerocon.edit.captioning.DEFAULT_CAPTIONER` for Stable Diffusion, whose repos hold none), or
        ``"none"`` for no captioner; ``None`` keeps the model's own, if it has one.
        """
        from zerocon.models import missing_weights_error, resolve_model

        if captioner is not None:
            if captioner == "none":
                kwargs.update(caption_generator=None, caption_processor=None)
            else:
                from zerocon.edit.captioning import load_captioner

                dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
                model, processor = load_captioner(captioner, dtype)
                kwargs.update(caption_generator=model, caption_processor=processor)
        name = str(pretrained_model_name_or_path)
        location = resolve_model(name)
        try:
            with warnings.catch_warnings():  # diffusers passes huggingface_hub an argument it deprecated
                warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
                kwargs.update(cls._strict_components(location, name, kwargs))
                return super().from_pretrained(location, **kwargs)
        except ZeroconError:
            raise
        except (OSError, ValueError, FileNotFoundError) as exc:
            raise missing_weights_error(name, exc) from exc
        except Exception as exc:  # huggingface_hub errors (offline, not found, gated) have no common base
            if type(exc).__module__.startswith(("huggingface_hub", "requests", "urllib3", "httpx")):
                raise missing_weights_error(name, exc) from exc
            raise

    @classmethod
    def _strict_components(cls, location: Any, name: str, given: dict[str, Any]) -> dict[str, Any]:
        """The model components of ``location`` not in ``given``, each loaded strictly (a checkpoint that leaves
        weights missing or unexpected is an error naming them; diffusers would only warn)."""
        import importlib
        import inspect

        from diffusers import ModelMixin
        from transformers import PreTrainedModel

        from zerocon.pretrained import from_pretrained_strict

        dtype = given.get("dtype", given.get("torch_dtype"))
        accepted = inspect.signature(cls.__init__).parameters
        loaded: dict[str, Any] = {}
        for part, spec in cls.load_config(location).items():
            if part in given or part not in accepted or not isinstance(spec, (list, tuple)) or None in spec:
                continue
            library, class_name = spec
            if library not in ("transformers", "diffusers"):
                continue
            component = getattr(importlib.import_module(library), class_name, None)
            options: dict[str, Any] = {"subfolder": part}
            if isinstance(component, type) and issubclass(component, ModelMixin):
                options["torch_dtype"] = dtype
            elif isinstance(component, type) and issubclass(component, PreTrainedModel):
                options["dtype"] = dtype
            else:
                continue  # tokenizers, processors, schedulers hold no weights
            what = f"--model {name} ({part})"
            loaded[part] = from_pretrained_strict(component, location, what, **options)
        return loaded

    def set_captioner(self, captioner: str) -> None:
        """Caption with the BLIP at ``captioner`` (hub id or folder), on this pipeline's device and in its
        UNet's dtype (what ``from_pretrained(..., captioner=...)`` does at load time)."""
        from zerocon.edit.captioning import load_captioner

        model, processor = load_captioner(captioner, self.unet.dtype)
        self.register_modules(caption_generator=model.to(self._execution_device), caption_processor=processor)

    @property
    def has_captioner(self) -> bool:
        return self.caption_generator is not None and self.caption_processor is not None

    # ------------------------------------------------------------------ helpers shared with diffusers
    def encode_prompt(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """diffusers' ``StableDiffusionPipeline.encode_prompt`` (same embeddings as the peer)."""
        return StableDiffusionPipeline.encode_prompt(self, *args, **kwargs)

    def prepare_latents(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return StableDiffusionPipeline.prepare_latents(self, *args, **kwargs)

    def prepare_extra_step_kwargs(self, generator: Any, eta: float) -> dict[str, Any]:
        return StableDiffusionPipeline.prepare_extra_step_kwargs(self, generator, eta)

    @property
    def model_size(self) -> int:
        """Side in pixels of the square images the UNet was trained on (``sample_size * vae scale``)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def _unet(
        self,
        sample: torch.Tensor,
        timestep: Any,
        embeds: torch.Tensor,
        cross_attention_kwargs: dict[str, Any],
    ) -> torch.Tensor:
        """The UNet's output in ``sample``'s dtype (float32): only the network runs in the UNet's dtype, so
        schedulers, regularisation, guidance losses and latent updates stay float32 in half precision."""
        dtype = self.unet.dtype
        out = self.unet(
            sample.to(dtype),
            timestep,
            encoder_hidden_states=embeds.to(dtype),
            cross_attention_kwargs=cross_attention_kwargs,
        ).sample
        return out.to(sample.dtype)

    def _warn_if_not_ddim(self, scheduler: Any, inverse: bool = False) -> None:
        if is_ddim(scheduler, inverse) or getattr(self, "_warned_not_ddim", False):
            return
        self._warned_not_ddim = True
        warnings.warn(
            f"{type(scheduler).__name__} is not DDIM{' inversion' if inverse else ''}: pix2pix-zero inverts "
            "with DDIM and must denoise with DDIM; pipe.edit() does, or pass DDIM schedulers "
            "(zerocon.edit.schedulers.ddim_schedulers)",
            UserWarning,
            stacklevel=3,
        )

    @torch.no_grad()
    def generate_caption(self, images: Any, prefix: str | None = None, max_new_tokens: int = 128) -> str:
        """BLIP caption of ``images``; ``prefix`` defaults to the pipeline's ``caption_prefix`` (diffusers'
        recipe: ``"a photography of"``)."""
        from zerocon.edit.captioning import blip_caption

        if self.caption_generator is None or self.caption_processor is None:
            raise ZeroconError("this pipeline has no captioner (caption_generator / caption_processor)")
        return blip_caption(
            self.caption_generator,
            self.caption_processor,
            images,
            device=self._execution_device,
            prefix=self.config.caption_prefix if prefix is None else prefix,
            max_new_tokens=max_new_tokens,
        )

    def construct_direction(self, embs_source: torch.Tensor, embs_target: torch.Tensor) -> torch.Tensor:
        """Edit direction: mean target embedding minus mean source embedding, (1, tokens, dim)."""
        return (embs_target.mean(0) - embs_source.mean(0)).unsqueeze(0)

    @torch.no_grad()
    def get_embeds(self, prompt: list[str], batch_size: int = 16) -> torch.Tensor:
        """Mean text-encoder hidden states of ``prompt`` sentences, (1, tokens, dim) (pix2pix-zero's banks)."""
        from zerocon.edit.directions import embed_sentences

        return embed_sentences(self.tokenizer, self.text_encoder, prompt, batch_size=batch_size)

    def prepare_image_latents(
        self,
        image: torch.Tensor,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """VAE latents of a preprocessed image batch (a 4-channel ``image`` is taken as latents already)."""
        image = image.to(device=device, dtype=dtype)
        if image.shape[1] == self.vae.config.latent_channels:
            latents = image
        else:
            if isinstance(generator, list):
                if len(generator) != batch_size:
                    raise ValueError(f"{len(generator)} generators for a batch of {batch_size}")
                latents = torch.cat(
                    [
                        self.vae.encode(image[i : i + 1]).latent_dist.sample(generator[i])
                        for i in range(batch_size)
                    ]
                )
            else:
                latents = self.vae.encode(image).latent_dist.sample(generator)
            latents = self.vae.config.scaling_factor * latents
        if latents.shape[0] != batch_size:
            if batch_size % latents.shape[0]:
                raise ValueError(f"cannot repeat {latents.shape[0]} images to {batch_size} prompts")
            latents = latents.repeat(batch_size // latents.shape[0], 1, 1, 1)
        return latents

    def _clean_latents(
        self,
        image: PipelineImageInput,
        latents: torch.Tensor | None,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """The float32 VAE latents of ``image`` for ``invert`` (or the given clean ``latents``), one per prompt."""
        if image is not None:
            pixels = self.image_processor.preprocess(image)
            latents = self.prepare_image_latents(pixels, batch_size, self.vae.dtype, device, generator)
        else:
            latents = self.prepare_image_latents(latents, batch_size, self.vae.dtype, device, generator)
        latents = latents.float()
        if image is not None and not torch.isfinite(latents).all():
            raise ZeroconError("the VAE encoded the image to NaN/Inf latents; use float32 (--dtype float32)")
        return latents

    def _decode(self, latents: torch.Tensor, output_type: str) -> Any:
        """Decode in the VAE's dtype; a half-precision VAE that overflows (non-finite pixels) decodes again in
        float32, as diffusers' ``upcast_vae`` does for SDXL."""
        if output_type == "latent":
            return latents
        scaled = latents / self.vae.config.scaling_factor
        image = self.vae.decode(scaled.to(self.vae.dtype), return_dict=False)[0]
        if not torch.isfinite(image).all() and self.vae.dtype != torch.float32:
            dtype = self.vae.dtype
            self.vae.to(torch.float32)
            try:
                image = self.vae.decode(scaled.float(), return_dict=False)[0]
            finally:
                self.vae.to(dtype)
        if not torch.isfinite(image).all():
            raise ZeroconError(
                "the VAE decoded NaN/Inf pixels (in float32 too); the latents are out of range"
            )
        return self.image_processor.postprocess(image.float(), output_type=output_type)

    # ------------------------------------------------------------------ inversion
    @torch.no_grad()
    def invert(
        self,
        prompt: str | list[str] | None = None,
        image: PipelineImageInput = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        cross_attention_guidance_amount: float = CROSS_ATTENTION_GUIDANCE_AMOUNT,
        output_type: str | None = "pil",
        return_dict: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        callback_steps: int | None = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
        lambda_auto_corr: float = 20.0,
        lambda_kl: float = 20.0,
        num_reg_steps: int = 5,
        num_auto_corr_rolls: int = 5,
        allow_zero_roll: bool = False,
        inverse_scheduler: Any = None,
    ) -> ZeroConInversionOutput | tuple[torch.Tensor, Any]:
        """Regularised DDIM inversion of ``image`` under ``prompt`` (pix2pix-zero).

        Arguments are diffusers' ``StableDiffusionPix2PixZeroPipeline.invert``'s, same meaning and defaults
        (``cross_attention_guidance_amount`` unused there too). ``latents`` without ``image`` are clean image
        latents to invert; ``allow_zero_roll`` reproduces diffusers' auto-correlation offsets in ``[0, H/2)``
        (by default never 0, as in the fixed official code); ``inverse_scheduler`` replaces the pipeline's
        for this call. The latents stay float32 whatever the UNet's dtype.
        """
        # 1. Check inputs and define call parameters
        if prompt is None and prompt_embeds is None:
            raise ValueError("invert needs `prompt` or `prompt_embeds`")
        if image is None and latents is None:
            raise ValueError("invert needs `image` (or clean image `latents`)")
        batch_size = _batch_size(prompt, prompt_embeds)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        unet_kwargs = dict(cross_attention_kwargs or {})
        scheduler = inverse_scheduler or self.inverse_scheduler
        self._warn_if_not_ddim(scheduler, inverse=True)

        # 2. Encode the image
        latents = self._clean_latents(image, latents, batch_size, device, generator)

        # 3. Encode the prompt (with CFG: the unconditional embeddings first)
        embeds, negative = self.encode_prompt(prompt, device, 1, do_cfg, prompt_embeds=prompt_embeds)
        prompt_embeds = torch.cat([negative, embeds]) if do_cfg else embeds

        # 4. Timesteps of the inverse scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = scheduler.timesteps
        regularisation = dict(
            generator=generator[0] if isinstance(generator, list) else generator,
            lambda_auto_corr=lambda_auto_corr,
            lambda_kl=lambda_kl,
            num_reg_steps=num_reg_steps,
            num_auto_corr_rolls=num_auto_corr_rolls,
            allow_zero_roll=allow_zero_roll,
        )
        noise_at = partial(self._inverse_noise_pred, scheduler, prompt_embeds, guidance_scale, unet_kwargs)

        # 5. Inversion loop with noise regularisation
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            report = _step_reporter(
                progress_bar, callback, callback_steps, num_inference_steps, scheduler, self.scheduler
            )
            for i, t in enumerate(timesteps):
                noise_pred = noise_at(latents, t, regularisation)
                latents = scheduler.step(noise_pred, t, latents).prev_sample
                check_finite(latents, "inversion", i, t)
                report(i, t, latents)

        inverted = latents.detach().clone(memory_format=torch.contiguous_format)
        images = self._decode(latents, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return inverted, images
        return ZeroConInversionOutput(latents=inverted, images=images)

    def _inverse_noise_pred(
        self,
        scheduler: Any,
        prompt_embeds: torch.Tensor,
        guidance_scale: float,
        unet_kwargs: dict[str, Any],
        latents: torch.Tensor,
        t: Any,
        regularisation: dict[str, Any],
    ) -> torch.Tensor:
        """One inversion step's noise prediction (with CFG when ``guidance_scale > 1``), regularised towards
        white noise by :func:`regularize_noise` with ``regularisation`` unless its ``num_reg_steps`` is 0."""
        do_cfg = guidance_scale > 1.0
        model_input = torch.cat([latents] * 2) if do_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        noise_pred = self._unet(model_input, t, prompt_embeds, unet_kwargs)
        noise_pred = combine_cfg(noise_pred, guidance_scale) if do_cfg else noise_pred
        if regularisation["num_reg_steps"] <= 0:
            return noise_pred
        sample = model_input.chunk(2)[0] if do_cfg else model_input
        alpha_prod = scheduler.alphas_cumprod[t]
        prediction_type = scheduler.config.prediction_type
        return regularize_noise(noise_pred, sample, prediction_type, alpha_prod, **regularisation)

    # ------------------------------------------------------------------ editing
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        source_embeds: torch.Tensor = None,
        target_embeds: torch.Tensor = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int | None = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        cross_attention_guidance_amount: float = CROSS_ATTENTION_GUIDANCE_AMOUNT,
        output_type: str | None = "pil",
        return_dict: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        callback_steps: int | None = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        method: str = METHODS[0],
        patch_nce: PatchNCEGuidance | None = None,
        return_reconstruction: bool = False,
        scheduler: Any = None,
        guidance_stats: list[dict[str, float]] | None = None,
    ) -> ZeroConPipelineOutput | tuple[Any, None]:
        """Edit (or generate) along ``target_embeds - source_embeds`` starting from ``latents``.

        Arguments are diffusers' ``StableDiffusionPix2PixZeroPipeline.__call__``'s, same meaning and defaults,
        plus ``method`` (``"word_swap"``, ``"pix2pix_zero"`` or ``"zerocon"``), ``patch_nce`` (its settings,
        default :class:`PatchNCEGuidance`), ``return_reconstruction`` (decode the reference pass too),
        ``scheduler`` (this call's sampler; not DDIM gets a one-time warning) and ``guidance_stats`` (a list
        that gets per guided step the two guidance gradients' norms). Latents, guidance losses and updates are
        float32 whatever the UNet's dtype. The two passes run in lock-step (:mod:`zerocon.edit.lockstep`).
        """
        # 1. Check inputs
        check_method(method)
        _check_call_inputs(prompt, prompt_embeds, source_embeds, target_embeds, callback_steps)
        patch_nce = patch_nce_for_model(patch_nce, self.config)

        # 2. Call parameters
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        batch_size = _batch_size(prompt, prompt_embeds)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        scheduler = scheduler or self.scheduler
        self._warn_if_not_ddim(scheduler)

        # 3. Encode the prompt, and the edited prompt: the direction added to the conditional half only
        prompt_embeds, edit_embeds, num_cond = self._encode_edit_prompt(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, source_embeds, target_embeds,
            num_images_per_prompt, clip_skip, do_cfg, device,
        )  # fmt: skip

        # 4. Timesteps (the lock-step state gives the edit pass its own copy of the scheduler)
        scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = scheduler.timesteps

        # 5. Starting latents (the inversion, or noise), float32 and contiguous (as a cached inversion is)
        shape = (batch_size * num_images_per_prompt, self.unet.config.in_channels, height, width)
        latents = self.prepare_latents(*shape, torch.float32, device, generator, latents).float().contiguous()

        # 6. Reference pass and guided edit pass, in lock-step
        edited, reference = self._lockstep_edit(
            latents, timesteps, scheduler, (prompt_embeds, edit_embeds, num_cond),
            (num_inference_steps, callback, callback_steps),
            method=method, guidance_scale=guidance_scale, patch_nce=patch_nce, generator=generator, eta=eta,
            cross_attention_guidance_amount=cross_attention_guidance_amount, unet_kwargs=cross_attention_kwargs,
            return_reconstruction=return_reconstruction, guidance_stats=guidance_stats,
        )  # fmt: skip

        # 7. Decode
        return self._edit_output(edited, reference, output_type, return_dict, return_reconstruction)

    def _lockstep_edit(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        scheduler: Any,
        embeds: tuple[torch.Tensor, torch.Tensor, int],
        progress: tuple[int, Callable[[int, int, torch.Tensor], None] | None, int | None],
        **guidance: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``__call__``'s two passes: the edited latents and the reference ones (``None`` when not run).
        ``guidance`` are :func:`~zerocon.edit.lockstep.new_state`'s settings (method, guidance scales, PatchNCE,
        generator, eta, ...); the pipeline adds the scheduler's extra step arguments, the latent size and device."""
        generator, eta = guidance["generator"], guidance["eta"]
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        state = new_state(
            self._unet,
            scheduler,
            *embeds,
            extra_step_kwargs=extra_step_kwargs,
            latent_hw=(latents.shape[-2], latents.shape[-1]),
            device=self._execution_device,
            **guidance,
        )
        num_steps, callback, callback_steps = progress
        with installed_processors(self.unet), self.progress_bar(total=num_steps) as progress_bar:
            report = _step_reporter(progress_bar, callback, callback_steps, num_steps, scheduler, scheduler)
            edited, reference = run_lockstep_edit(state, latents, timesteps, report)
        return edited, reference if state.need_reference else None

    def _edit_output(
        self,
        edited: torch.Tensor,
        reference: torch.Tensor | None,
        output_type: str,
        return_dict: bool,
        return_reconstruction: bool,
    ) -> ZeroConPipelineOutput | tuple[Any, None]:
        """``__call__``'s result: the decoded edit (and reconstruction, when asked) and the final latents."""
        images = self._decode(edited, output_type)
        reconstruction = self._decode(reference, output_type) if return_reconstruction else None
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, None
        return ZeroConPipelineOutput(
            images=images,
            nsfw_content_detected=None,
            reconstruction=reconstruction,
            latents=edited,
            reference_latents=reference,
        )

    def _encode_edit_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        source_embeds: torch.Tensor,
        target_embeds: torch.Tensor,
        num_images_per_prompt: int | None,
        clip_skip: int | None,
        do_cfg: bool,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The prompt's embeddings (with CFG: negative, then prompt), the edited embeddings (the direction
        ``target_embeds - source_embeds`` added, in float32, to the conditional rows) and their number."""
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            device,
            num_images_per_prompt,
            do_cfg,
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            clip_skip=clip_skip,
        )
        num_cond = prompt_embeds.shape[0]
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        direction = self.construct_direction(source_embeds.float(), target_embeds.float()).to(device)
        edit_embeds = prompt_embeds.to(torch.float32, copy=True)
        edit_embeds[prompt_embeds.shape[0] - num_cond :] += direction
        return prompt_embeds, edit_embeds.to(prompt_embeds.dtype), num_cond

    # ------------------------------------------------------------------ the whole recipe on a photo
    # (zerocon.edit.photo; these methods are its entry points on the pipeline)
    def prepare_image(self, image: Any) -> tuple[PIL.Image.Image, tuple[int, int]]:
        """See :func:`zerocon.edit.photo.prepare_image`."""
        return photo.prepare_image(self, image)

    def recipe_schedulers(self) -> tuple[Any, Any]:
        """See :func:`zerocon.edit.photo.recipe_schedulers`."""
        return photo.recipe_schedulers(self)

    def caption_image(self, image: PIL.Image.Image, config: EditConfig, source: str | None = None) -> str:
        """See :func:`zerocon.edit.photo.caption_image`."""
        return photo.caption_image(self, image, config, source)

    def caption_source(self, caption: str | None, config: EditConfig) -> str:
        """See :func:`zerocon.edit.photo.caption_source`."""
        return photo.caption_source(self, caption, config)

    def invert_image(self, image: Any, caption: str | None = None, source: str | None = None,
                     config: EditConfig | None = None) -> Inversion:  # fmt: skip
        """Caption (unless given) and regularised DDIM inversion of a photo (:func:`zerocon.edit.photo.invert_photo`)."""
        return photo.invert_photo(self, image, caption, source, config)

    def edit(self, image: Any, target: str | None = None, source: str | None = None, caption: str | None = None,
             direction: Any = None, config: EditConfig | None = None, inversion: Inversion | None = None,
             ) -> EditResult:  # fmt: skip
        """Edit a photo: caption -> regularised DDIM inversion -> reference pass -> guided edit -> decode
        (:func:`zerocon.edit.photo.edit_photo`, which documents the arguments)."""
        return photo.edit_photo(self, image, target, source, caption, direction, config, inversion)
