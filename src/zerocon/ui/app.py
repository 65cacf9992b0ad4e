"""The web app: an Edit tab (zero-shot editing) and a Translate tab (CUT / LANIT runs), built with Gradio.

The page is a thin layer over :mod:`zerocon.ui.jobs`: every handler validates its inputs with the same code the
CLI uses, turns a :class:`~zerocon.errors.ZeroconError` into an error shown in the page, and writes outputs only
under the app's own ``workdir``. Jobs go through Gradio's queue: one job at a time per model (the Edit tab's
model, and each translation model), with the position in the queue shown on the waiting outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zerocon.edit.cache import InversionCache, file_digest
from zerocon.edit.config import CROSS_ATTENTION_GUIDANCE_AMOUNT
from zerocon.errors import ZeroconError
from zerocon.ui.jobs import (
    METHODS,
    EditSettings,
    ModelCache,
    RunInfo,
    UIConfig,
    caption_of,
    check_upload,
    editor_identity,
    list_runs,
    load_editor,
    load_translator,
    model_edit_defaults,
    new_job_dir,
    resolve_run,
    run_edit,
    translate_images,
    write_examples,
)

log = logging.getLogger("zerocon.ui")

EditorLoader = Callable[[str], Any]
TranslatorLoader = Callable[[RunInfo, Path], Any]


DISPLAY_SIDE = 256
"""Small images (ShapesWorld's 64 px) are shown enlarged to this side with nearest-neighbour pixels;
downloads are always the files at their real size."""


def _display(image: Any) -> Any:
    """``image`` enlarged by an integer factor (sharp pixels) when its longer side is below DISPLAY_SIDE."""
    if image is None or max(image.size) >= DISPLAY_SIDE:
        return image
    from PIL import Image

    factor = max(1, DISPLAY_SIDE // max(image.size))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def _patch_nce_label(scale: str | None) -> str:
    """The PatchNCE slider's label, saying what its weight multiplies."""
    if scale == "relative":
        return "Contrastive (PatchNCE) weight, as a multiple of the cross-attention push"
    return "Contrastive (PatchNCE) weight, on the PatchNCE loss"


def _done_message(outcome: Any) -> str:
    """The status line after an edit: its time, whether the inversion came from the cache, the edited caption."""
    record = outcome.record
    cached = " (inversion from the cache)" if record["inversion_cache_hit"] else ""
    edited = outcome.edited_caption or "(direction given)"
    return f"Done in {record['timings_seconds']['total']} s{cached}. Edited caption: {edited}."


def _page_error(exc: BaseException) -> Exception:
    """The error shown in the page: a ZeroconError's own message, otherwise a short note (details in the log)."""
    import gradio as gr

    if isinstance(exc, ZeroconError):
        return gr.Error(str(exc), duration=None, print_exception=False)
    log.exception("unexpected error in the web app")
    first = (str(exc).strip().splitlines() or [""])[0]
    return gr.Error(f"internal error ({type(exc).__name__}: {first}); see the server log", duration=None)


def build_app(
    config: UIConfig,
    editor_loader: EditorLoader | None = None,
    translator_loader: TranslatorLoader = load_translator,
    cache: ModelCache | None = None,
) -> Any:
    """Build the Gradio ``Blocks`` of the app (not launched). Loaders are injectable for tests; the editor's
    default is :func:`~zerocon.ui.jobs.load_editor` with the config's captioner, device and dtype."""
    import gradio as gr

    cache = cache or ModelCache()
    workdir = Path(config.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runs = Path(config.runs).resolve()
    examples = write_examples(workdir)
    model_key = f"editor:{config.model}"
    inversions = InversionCache(config.cache_dir) if config.cache_dir is not None else None

    identity: dict[str, str] = {}  # the loaded editor's model_key, computed once when it loads

    def load() -> Any:
        if editor_loader is not None:
            loaded = editor_loader(config.model)
        else:
            loaded = load_editor(config.model, config.captioner, config.device, config.dtype)
        identity["key"] = editor_identity(loaded, config.model)
        return loaded

    def editor() -> Any:
        return cache.get(model_key, load)

    # -- Edit tab handlers --------------------------------------------------------------------------------
    def on_photo(path: str | None) -> tuple[Any, ...]:
        """A new photo: check it and show it at once (no model needed), or show its error in the page.

        A bad file clears the previous results and the caption.
        """
        if not path:
            return None, None, None, "", ""
        try:
            image = check_upload(path, config, "photo")
        except ZeroconError as exc:
            return None, None, None, "", f"**Error:** {exc}"
        except Exception as exc:
            raise _page_error(exc) from None
        return _display(image), None, None, "", "Captioning the photo (the model loads on first use)..."

    def on_caption(path: str | None, status: str) -> tuple[str, str]:
        """Fill in the automatic caption of a good photo (loading the model on first use)."""
        if not path or status.startswith("**Error:**"):
            return "", status
        try:
            image = check_upload(path, config, "photo")
            caption = caption_of(editor(), image)
        except ZeroconError as exc:
            return "", f"**Error:** {exc}"
        except Exception as exc:
            raise _page_error(exc) from None
        return caption, ("" if caption else "No captioner in this model: type the caption of the photo.")

    def on_edit(
        path: str | None,
        caption: str,
        target: str,
        method: str,
        steps: float,
        seed: float,
        guidance_scale: float,
        cross_attention_guidance_amount: float,
        patch_nce_weight: float,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[Any, ...]:
        try:
            image = check_upload(path, config, "photo")
            settings = EditSettings(
                target=target or "",
                source=caption or None,
                method=method,
                steps=int(steps),
                seed=int(seed),
                guidance_scale=float(guidance_scale),
                cross_attention_guidance_amount=float(cross_attention_guidance_amount),
                patch_nce_weight=float(patch_nce_weight),
            )
            settings.check(config)
            progress(0.0, desc="loading model")
            model = editor()
            job = new_job_dir(workdir, "edit")
            outcome = run_edit(
                model,
                image,
                settings,
                job,
                config.model,
                cache=inversions,
                image_digest=file_digest(path),
                input_name=Path(path).name,
                captioner=config.captioner,
                model_identity=identity.get("key"),  # None (a cache shared with another app): now
            )
        except Exception as exc:
            raise _page_error(exc) from None
        files = outcome.files
        return (
            _display(image),
            _display(outcome.reconstruction),
            _display(outcome.edit),
            outcome.caption,
            gr.DownloadButton(value=str(files["edit"]), visible=True),
            gr.DownloadButton(value=str(files["reconstruction"]), visible=True),
            gr.DownloadButton(value=str(files["comparison"]), visible=True),
            gr.DownloadButton(value=str(files["record"]), visible=True),
            outcome.record,
            _done_message(outcome),
        )

    # -- Translate tab handlers ---------------------------------------------------------------------------
    def run_choices() -> list[tuple[str, str]]:
        return [(info.label, info.name) for info in list_runs(runs)]

    def on_refresh() -> Any:
        choices = run_choices()
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def on_translate(
        run_name: str | None,
        paths: list[str] | None,
        words: str,
        reference_path: str | None,
        seed: float,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[Any, ...]:
        try:
            info = resolve_run(runs, run_name or "")
            paths = list(paths or [])
            if not paths:
                raise ZeroconError("no images uploaded: choose one or more image files")
            if len(paths) > config.max_translate_files:
                raise ZeroconError(
                    f"too many images ({len(paths)}); the limit is {config.max_translate_files} per request"
                )
            images, names, failures = [], [], []
            for path in paths:
                try:
                    images.append(check_upload(path, config))
                    names.append(Path(path).name)
                except ZeroconError as exc:
                    failures.append(str(exc))
            reference = check_upload(reference_path, config, "reference image") if reference_path else None
            to_words = [w.strip() for w in (words or "").split(",") if w.strip()]
            if not images:
                raise ZeroconError("no usable image: " + "; ".join(failures))
            progress(0.0, desc="loading model")
            run_dir = runs / info.name
            stamp = (run_dir / "checkpoint" / "manifest.json").stat().st_mtime_ns
            translator = cache.get(f"run:{info.name}:{stamp}", lambda: translator_loader(info, run_dir))
            job = new_job_dir(workdir, "translate")
            outputs = translate_images(
                translator, info, images, names, job, to_words, reference, seed=int(seed)
            )
        except Exception as exc:
            raise _page_error(exc) from None
        summary = f"Translated {len(outputs)} image(s) with {info.label}."
        if failures:
            summary += f" {len(failures)} file(s) skipped:\n" + "\n".join(f"- {f}" for f in failures)
        gallery = [(str(p), n) for p, n in zip(outputs, names)]
        return gallery, [str(p) for p in outputs], summary

    # -- the page -----------------------------------------------------------------------------------------
    with gr.Blocks(title="zerocon", analytics_enabled=False) as demo:
        gr.Markdown(
            "# zerocon\nZero-shot photo editing with pix2pix-zero / pix2pix-zeroCon, and CUT / LANIT "
            f"translation. Model: `{config.model}`. One job runs at a time per model; others wait in the "
            "queue (their position is shown on the outputs)."
        )
        with gr.Tab("Edit", id="edit"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.File(
                        label="Photo", file_types=["image"], type="filepath", elem_id="edit-upload"
                    )
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[photo], label="Examples")
                    caption = gr.Textbox(
                        label="Caption (automatic, editable)", elem_id="edit-caption", interactive=True
                    )
                    target = gr.Textbox(
                        label="Target: a word swap 'circle->square' or a full sentence",
                        placeholder="circle->square",
                        elem_id="edit-target",
                    )
                    method = gr.Radio(list(METHODS), value=METHODS[0], label="Method", elem_id="edit-method")
                    with gr.Row():
                        steps = gr.Slider(
                            1,
                            config.max_steps,
                            value=min(20, config.max_steps),
                            step=1,
                            label="Steps",
                            elem_id="edit-steps",
                        )
                        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="edit-seed")
                    with gr.Accordion("Guidance weights", open=False):
                        defaults = model_edit_defaults(config.model)
                        guidance_scale = gr.Slider(
                            0,
                            15,
                            value=defaults.guidance_scale,
                            step=0.5,
                            label="Classifier-free guidance",
                        )
                        cross_attention_guidance_amount = gr.Slider(
                            0,
                            0.5,
                            value=CROSS_ATTENTION_GUIDANCE_AMOUNT,
                            step=0.01,
                            label="Cross-attention guidance",
                        )
                        contrastive = gr.Slider(
                            0,
                            max(10.0, 2 * defaults.patch_nce.weight),
                            value=defaults.patch_nce.weight,
                            step=0.05,
                            label=_patch_nce_label(defaults.patch_nce.scale),
                        )
                    run = gr.Button("Edit", variant="primary", elem_id="edit-run")
                with gr.Column(scale=2):
                    with gr.Row():
                        shown_input = gr.Image(
                            label="Input", interactive=False, height=300, elem_id="edit-input"
                        )
                        shown_recon = gr.Image(
                            label="Reconstruction", interactive=False, height=300, elem_id="edit-recon"
                        )
                        shown_edit = gr.Image(
                            label="Edit", interactive=False, height=300, elem_id="edit-result"
                        )
                    status = gr.Markdown(elem_id="edit-status")
                    with gr.Row():
                        dl_edit = gr.DownloadButton("Download edit", visible=False, elem_id="dl-edit")
                        dl_recon = gr.DownloadButton(
                            "Download reconstruction", visible=False, elem_id="dl-recon"
                        )
                        dl_comp = gr.DownloadButton(
                            "Download comparison", visible=False, elem_id="dl-comparison"
                        )
                        dl_record = gr.DownloadButton(
                            "Download record (JSON)", visible=False, elem_id="dl-record"
                        )
                    with gr.Accordion("Record (JSON)", open=False):
                        record = gr.JSON(label="Record", elem_id="edit-record", max_height=400)
            photo.change(
                on_photo, inputs=[photo], outputs=[shown_input, shown_recon, shown_edit, caption, status]
            ).then(
                on_caption,
                inputs=[photo, status],
                outputs=[caption, status],
                concurrency_id=model_key,
                concurrency_limit=1,
            )
            run.click(
                on_edit,
                inputs=[
                    photo,
                    caption,
                    target,
                    method,
                    steps,
                    seed,
                    guidance_scale,
                    cross_attention_guidance_amount,
                    contrastive,
                ],
                outputs=[
                    shown_input,
                    shown_recon,
                    shown_edit,
                    caption,
                    dl_edit,
                    dl_recon,
                    dl_comp,
                    dl_record,
                    record,
                    status,
                ],
                concurrency_id=model_key,
                concurrency_limit=1,
            )
        with gr.Tab("Translate", id="translate"):
            with gr.Row():
                with gr.Column(scale=1):
                    choices = run_choices()
                    run_pick = gr.Dropdown(
                        choices=choices,
                        value=choices[0][1] if choices else None,
                        label=f"CUT or LANIT run (from {runs})",
                        elem_id="tr-run",
                    )
                    refresh = gr.Button("Refresh list", size="sm")
                    inputs = gr.File(
                        label="Images",
                        file_count="multiple",
                        file_types=["image"],
                        type="filepath",
                        elem_id="tr-upload",
                    )
                    words = gr.Textbox(label="LANIT target words (comma separated)", elem_id="tr-words")
                    reference = gr.File(
                        label="or a LANIT reference image",
                        file_types=["image"],
                        type="filepath",
                        elem_id="tr-ref",
                    )
                    tr_seed = gr.Number(value=0, precision=0, label="Seed")
                    translate = gr.Button("Translate", variant="primary", elem_id="tr-run-button")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Results", elem_id="tr-gallery", columns=4)
                    downloads = gr.File(label="Download results", file_count="multiple", elem_id="tr-files")
                    tr_status = gr.Markdown(elem_id="tr-status")
            refresh.click(on_refresh, outputs=[run_pick], queue=False)
            translate.click(
                on_translate,
                inputs=[run_pick, inputs, words, reference, tr_seed],
                outputs=[gallery, downloads, tr_status],
                concurrency_id="translate",
                concurrency_limit=1,
            )
    demo.queue(max_size=config.max_queue, default_concurrency_limit=1)
    return demo


def _theme() -> Any:
    """Gradio's default look with system fonts only (the page must not fetch fonts from the internet)."""
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


def launch(config: UIConfig, block: bool = True, **build_kwargs: Any) -> tuple[Any, str]:
    """Build and serve the app; returns ``(demo, url)``. With ``block=False`` it returns while serving."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_app(config, **build_kwargs)
    workdir = Path(config.workdir).resolve()
    _, url, _ = demo.launch(
        server_name=config.host,
        server_port=config.port,
        max_file_size=config.max_upload_bytes,
        allowed_paths=[str(workdir / "jobs"), str(workdir / "examples")],
        prevent_thread_lock=not block,
        show_error=True,
        ssr_mode=False,
        quiet=not block,
        theme=_theme(),
        footer_links=[],
    )
    return demo, url
