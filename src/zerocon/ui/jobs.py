"""What the web app does behind its widgets: limits, its own folders, lazy model loading, and the jobs.

Nothing here imports Gradio, so it is tested directly. The app has exactly three folders of its own:
``workdir`` (everything it writes: one sub-folder per job, the example scenes), ``runs`` (where it looks for
CUT / LANIT checkpoints) and ``cache_dir`` (the inversion cache it shares with ``zerocon edit``). A user never
names a path: uploads arrive through the browser, checkpoints are picked by their name inside ``runs``, cache
entries are named by a digest, and every name is resolved and checked to stay inside its folder, so no request
can make the app read or write anywhere else. An edit's folder is written by the command line's writer
(:mod:`zerocon.edit.records`), so its ``record.json`` has the same keys as ``zerocon edit``'s.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from zerocon.edit.cache import (
    DEFAULT_CACHE,
    InversionCache,
    bytes_digest,
    inversion_cache_key,
    inversion_settings,
    model_key,
)

# METHODS: the editing methods offered in the Edit tab (the editor's own, from its settings module)
from zerocon.edit.config import (
    CROSS_ATTENTION_GUIDANCE_AMOUNT,
    METHODS,
    EditConfig,
    PatchNCEGuidance,
    check_method,
)
from zerocon.edit.records import (
    EditOutput,
    captioner_name,
    describe_request,
    describe_runtime,
    request_key,
    write_edit_folder,
)
from zerocon.errors import ZeroconError
from zerocon.images import load_image
from zerocon.io import save_image_atomic


@dataclass
class UIConfig:
    """Settings of the web app (``zerocon ui``); every limit applies to every request."""

    model: str = "shapes"
    """Diffusion model for the Edit tab: ``shapes`` (bundled), a local folder, or a hub id in the cache."""
    captioner: str = "auto"
    """BLIP for the Edit tab's captions: ``auto`` (the model's own, else Salesforce/blip-image-captioning-base),
    ``none`` (the user types the caption), or a hub id / folder."""
    device: str = "auto"
    """Device of the editor: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    dtype: str = "auto"
    """dtype of the editor's networks: ``auto`` (float16 on CUDA, float32 elsewhere), float32, float16, bfloat16."""
    host: str = "127.0.0.1"
    """Address to listen on; the default serves this machine only."""
    port: int = 7860
    """Port to listen on."""
    workdir: Path = field(default_factory=lambda: Path("zerocon-ui"))
    """The app's own folder: every output is written under ``workdir/jobs``; examples under ``workdir/examples``."""
    cache_dir: Path | None = field(default_factory=lambda: DEFAULT_CACHE)
    """The inversion cache, shared with ``zerocon edit`` by default (:data:`~zerocon.edit.cache.DEFAULT_CACHE`):
    a second edit of the same photo with the same inversion settings reuses its inversion. ``None``: no cache."""
    runs: Path = field(default_factory=lambda: Path("runs"))
    """The folder whose CUT / LANIT runs (``RUN/checkpoint``) the Translate tab offers."""
    max_upload_mb: float = 20.0
    """Largest accepted upload, in megabytes (enforced by Gradio on upload and again here)."""
    max_pixels: int = 16_000_000
    """Largest accepted image, in pixels (checked from the header, before decoding)."""
    max_steps: int = 100
    """Upper bound of the diffusion-steps slider."""
    max_translate_files: int = 16
    """Most images translated in one request."""
    max_queue: int = 16
    """Most requests waiting in the queue; later ones are refused with a message."""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


# -- the app's folders ---------------------------------------------------------------------------------------
def inside(base: Path, name: str | os.PathLike) -> Path:
    """``base / name`` resolved, or ``ZeroconError`` if it leaves ``base`` (``..``, absolute paths, links)."""
    base = Path(base).resolve()
    candidate = (base / name).resolve()
    if candidate != base and base not in candidate.parents:
        raise ZeroconError(f"'{name}' is outside the app's folder {base}")
    return candidate


def new_job_dir(workdir: Path, kind: str) -> Path:
    """A fresh folder ``workdir/jobs/<kind>-<time>-<random>`` for one request's outputs."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(workdir).resolve() / "jobs" / f"{kind}-{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def check_upload(path: str | os.PathLike | None, config: UIConfig, what: str = "image") -> Image.Image:
    """Load an uploaded file as RGB with the app's limits; every problem is a one-line ``ZeroconError``.

    The message names the file by its base name only (the server's temporary folder means nothing to a user).
    """
    if path is None or str(path) == "":
        raise ZeroconError(f"no {what} uploaded: choose a file or an example first")
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ZeroconError(f"{name}: the upload is gone; please upload it again") from exc
    if size > config.max_upload_bytes:
        raise ZeroconError(
            f"{name}: file is too large ({size / 2**20:.1f} MB; the limit is {config.max_upload_mb:g} MB)"
        )
    try:
        return load_image(path, max_pixels=config.max_pixels)
    except ZeroconError as exc:
        raise ZeroconError(str(exc).replace(str(path), name)) from None


def write_examples(workdir: Path, count: int = 4) -> list[Path]:
    """Render a few ShapesWorld scenes into ``workdir/examples`` (deterministic; kept if already there)."""
    from zerocon.shapes import render_seed

    folder = Path(workdir).resolve() / "examples"
    paths = []
    for seed in range(count):
        path = folder / f"scene_{seed}.png"
        if not path.is_file():
            save_image_atomic(render_seed(seed).pil(), path)
        paths.append(path)
    return paths


# -- lazy, cached models ----------------------------------------------------------------------------------
class ModelCache:
    """Loads each model once, on first use, and keeps it; a per-key lock stops two threads loading twice."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.loads = 0
        """How many times a loader ran (a test checks the cache really caches)."""

    def get(self, key: str, loader: Callable[[], Any]) -> Any:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._models:
                self._models[key] = loader()
                self.loads += 1
            return self._models[key]

    def __contains__(self, key: str) -> bool:
        return key in self._models


# -- editing ---------------------------------------------------------------------------------------------
@dataclass
class EditSettings:
    """One request of the Edit tab (the editor's arguments, as the user set them)."""

    target: str
    source: str | None = None
    method: str = METHODS[0]
    steps: int = 20
    seed: int = 0
    guidance_scale: float | None = None
    """``None``: the model's own (see :func:`model_edit_defaults`)."""
    cross_attention_guidance_amount: float = CROSS_ATTENTION_GUIDANCE_AMOUNT
    patch_nce_weight: float | None = None
    """``None``: the model's own PatchNCE weight."""

    def check(self, config: UIConfig) -> None:
        if not self.target or not self.target.strip():
            raise ZeroconError(
                "the target is empty: type a word swap like 'circle->square' or a full sentence"
            )
        check_method(self.method)
        if not 1 <= int(self.steps) <= config.max_steps:
            raise ZeroconError(f"steps must be between 1 and {config.max_steps}, got {self.steps}")
        for name in ("guidance_scale", "cross_attention_guidance_amount", "patch_nce_weight"):
            if getattr(self, name) is None:
                continue
            value = float(getattr(self, name))
            if not (0.0 <= value < 1e4):
                raise ZeroconError(f"{name} must be a number between 0 and 10000, got {value}")


@dataclass
class EditOutcome:
    """What one edit produced: images, texts and the files written for download."""

    edit: Image.Image
    reconstruction: Image.Image
    caption: str
    edited_caption: str
    record: dict[str, Any]
    files: dict[str, Path]


def load_editor(model: str, captioner: str = "auto", device: str = "auto", dtype: str = "auto") -> Any:
    """The project's ZeroConPipeline for ``model`` (bundled name, local folder or cached hub id), as the
    command line loads it (see :func:`zerocon.edit.loading.load_edit_pipeline`)."""
    from zerocon.edit.loading import load_edit_pipeline

    return load_edit_pipeline(model, captioner=captioner, device=device, dtype=dtype)


def editor_identity(editor: Any, model: str) -> str:
    """The :func:`~zerocon.edit.cache.model_key` of a loaded editor (its folder's files as they were at load
    time, when taken then): what its cached inversions are keyed by."""
    return model_key(str(getattr(editor, "name_or_path", None) or model))


def model_edit_defaults(model: str) -> EditConfig:
    """The editor's :class:`~zerocon.edit.config.EditConfig` for ``model`` with the settings its
    model_index.json chooses (``edit_defaults``: guidance scale, PatchNCE weight, ...) filled in, else
    pix2pix-zero's; also when the model is not available yet (its absence is reported when an edit loads it)."""
    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.models import resolve_model

    try:
        model_config = ZeroConPipeline.load_config(resolve_model(model))
    except (OSError, ValueError, ZeroconError):
        model_config = {}
    return EditConfig().for_model(model_config)


def caption_of(editor: Any, image: Image.Image) -> str:
    """The editor's automatic (BLIP) caption of ``image``, or ``""`` when the model has no captioner."""
    if getattr(editor, "caption_generator", None) is None or not callable(
        getattr(editor, "generate_caption", None)
    ):
        return ""
    try:
        return str(editor.generate_caption(image)).strip()
    except ZeroconError:
        return ""


def edit_config(settings: EditSettings) -> Any:
    """The editor's :class:`~zerocon.edit.config.EditConfig` for the page's settings."""
    return EditConfig(
        method=settings.method,
        num_inference_steps=int(settings.steps),
        guidance_scale=None if settings.guidance_scale is None else float(settings.guidance_scale),
        cross_attention_guidance_amount=float(settings.cross_attention_guidance_amount),
        patch_nce=PatchNCEGuidance(
            weight=None if settings.patch_nce_weight is None else float(settings.patch_nce_weight)
        ),
        seed=int(settings.seed),
    )


def run_edit(
    editor: Any,
    image: Image.Image,
    settings: EditSettings,
    job_dir: Path,
    model: str,
    config_factory: Callable[[EditSettings], Any] = edit_config,
    *,
    cache: InversionCache | None = None,
    image_digest: str | None = None,
    input_name: str = "input.png",
    captioner: str = "auto",
    model_identity: str | None = None,
) -> EditOutcome:
    """Run ``editor.edit`` (a ZeroConPipeline) and write input / edit / reconstruction / comparison / record in
    ``job_dir`` with the command line's writer (:func:`zerocon.edit.records.write_edit_folder`: the same
    ``record.json`` as ``zerocon edit``).

    ``settings.source`` is the caption from the page (BLIP's, possibly corrected by the user); an empty one lets
    the editor caption the photo itself. With ``cache`` the inversion is taken from (or stored in) that
    :class:`~zerocon.edit.cache.InversionCache`, keyed by ``image_digest`` (the uploaded file's
    :func:`~zerocon.edit.cache.file_digest`; default: a digest of the pixels). ``input_name`` (the upload's base
    name) and ``captioner`` (the app's ``--captioner``) are recorded. ``model_identity`` is the editor's
    :func:`editor_identity`, computed when it was loaded (default: now).
    """
    started = time.perf_counter()
    caption = (settings.source or "").strip() or None
    if caption is None and getattr(editor, "caption_generator", None) is None:
        raise ZeroconError("this model has no captioner: type a caption describing the photo")
    config = config_factory(settings)
    resolved = config.for_model(editor.config)  # the record states every setting used
    target = settings.target.strip()
    digest = image_digest or _pixels_digest(image)
    identity = model_identity or editor_identity(editor, model)
    runtime = describe_runtime(editor, captioner_name(editor, captioner, model))
    inversion, hit = None, False
    if cache is not None:
        inversion_of = inversion_settings(editor, config, caption, None, runtime["captioner"])
        inversion, hit = cache.get(
            inversion_cache_key(digest, identity, inversion_of),
            inversion_of,
            lambda: editor.invert_image(image, caption=caption, config=config),
        )
    result = editor.edit(image, target=target, caption=caption, config=config, inversion=inversion)
    request = describe_request(
        "edit", identity, asdict(resolved), runtime, caption, None, target=target, direction=None
    )
    output = EditOutput(
        input=input_name,
        image=image,
        result=result,
        model=model,
        config=resolved,
        target=target,
        source=None,
        runtime=runtime,
        inversion_cache_hit=hit,
        request_key=request_key(digest, request),
        started=started,
    )
    record, files = write_edit_folder(job_dir, output, keep_input=True)
    return EditOutcome(
        result.edit, result.reconstruction, result.caption, result.edited_caption, record, files
    )


def _pixels_digest(image: Image.Image) -> str:
    """A digest of an image's pixels (for an image that comes without its file)."""
    return bytes_digest(f"{image.mode}:{image.size}:".encode() + image.tobytes())


# -- translation runs -------------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """A CUT or LANIT run found under the app's ``runs`` folder."""

    name: str
    """Path relative to ``runs`` (what the user picks)."""
    kind: str
    """``cut`` or ``lanit``."""
    detail: str
    """Preset or domain words, shown next to the name."""
    domains: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind}{', ' + self.detail if self.detail else ''})"


def list_runs(runs: Path, max_depth: int = 3) -> list[RunInfo]:
    """Every folder under ``runs`` holding a finished ``checkpoint/`` of CUT or LANIT, sorted by name."""
    runs = Path(runs)
    if not runs.is_dir():
        return []
    found = []
    base = runs.resolve()
    for manifest in sorted(runs.rglob("checkpoint/manifest.json")):
        run_dir = manifest.parent.parent
        rel = run_dir.resolve().relative_to(base) if base in run_dir.resolve().parents else None
        if rel is None or len(rel.parts) > max_depth:
            continue
        info = _run_info(run_dir, str(rel))
        if info is not None:
            found.append(info)
    return found


def _run_info(run_dir: Path, name: str) -> RunInfo | None:
    try:
        config = json.loads((run_dir / "checkpoint" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    method = config.get("method", {}) if isinstance(config, dict) else {}
    kind = str(method.get("method", "")).lower() if isinstance(method, dict) else ""
    if kind in ("cut", "fastcut", "sincut"):
        return RunInfo(name, "cut", str(method.get("preset", kind)))
    if kind == "lanit":
        domains = method.get("domains") or []
        domains = [str(d) for d in domains] if isinstance(domains, list) else []
        return RunInfo(name, "lanit", ", ".join(domains), domains)
    return None


def resolve_run(runs: Path, name: str) -> RunInfo:
    """The run ``name`` picked in the page: it must be one :func:`list_runs` offers (so inside ``runs``)."""
    if not name:
        raise ZeroconError(
            "no checkpoint chosen: train one with 'zerocon cut train' or 'zerocon lanit train'"
        )
    inside(runs, name)
    for info in list_runs(runs):
        if info.name == name:
            return info
    raise ZeroconError(f"'{name}' is not a CUT or LANIT run in {Path(runs).resolve()}")


def load_translator(info: RunInfo, run_dir: Path) -> Any:
    """The run's translator: a :class:`~zerocon.cut.translate.CUTTranslator` or a LANIT ``Translator``."""
    if info.kind == "cut":
        from zerocon.cut.translate import CUTTranslator

        return CUTTranslator.from_checkpoint(run_dir)
    from zerocon.lanit.translate import Translator

    return Translator.from_checkpoint(run_dir)


def translate_images(
    translator: Any,
    info: RunInfo,
    images: Sequence[Image.Image],
    names: Sequence[str],
    job_dir: Path,
    to_words: Sequence[str] = (),
    reference: Image.Image | None = None,
    seed: int = 0,
) -> list[Path]:
    """Translate ``images`` with a loaded CUT / LANIT model and write one PNG per input into ``job_dir``.

    CUT keeps each image's size. LANIT is latent-guided (one random style from ``seed`` towards ``to_words``)
    or, with ``reference``, reference-guided (its domains from ``to_words`` when given, else from CLIP).
    """
    import torch

    from zerocon.images import tensor_to_pil

    if info.kind == "cut":
        outputs = translator.translate(list(images))
    else:
        if reference is None and not to_words:
            raise ZeroconError("LANIT needs target words (e.g. 'red,square') or a reference image")
        unknown = [w for w in to_words if info.domains and w not in info.domains]
        if unknown:
            raise ZeroconError(
                f"unknown domain word(s) {', '.join(unknown)}; this run knows {', '.join(info.domains)}"
            )
        if reference is not None:
            batch = translator.reference(list(images), reference, words=list(to_words) or None)
        else:
            generator = torch.Generator().manual_seed(int(seed))
            batch = translator.latent(list(images), list(to_words), samples=1, generator=generator)[:, 0]
        outputs = [tensor_to_pil(x) for x in batch]
    paths = []
    for index, (name, output) in enumerate(zip(names, outputs)):
        stem = Path(name).stem or f"image_{index}"
        path = job_dir / f"{index:03d}_{stem}.png"
        save_image_atomic(output, path)
        paths.append(path)
    return paths
