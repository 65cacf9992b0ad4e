"""Folder-level evaluation: the papers' metrics for a folder of edits or of translations.

* :func:`evaluate_edits` — pix2pix-zero Table 1 (+ CLIP score): inputs and edits matched by file name.
* :func:`evaluate_translation` — CUT / LANIT: FID, KID, Density & Coverage, SWD; with one sub-folder per
  target domain in both folders, each domain is scored on its own and averaged (mFID etc.).

Each needed network is loaded from the option that names it (or injected by the caller); a metric whose network
or masks are missing is an error naming the option, never a skipped entry. The result is a plain dict that
:mod:`zerocon.metrics.report` writes as JSON, a Markdown table and a bar plot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from zerocon.errors import ZeroconError
from zerocon.images import find_images, image_folder
from zerocon.metrics.clip import DEFAULT_CLIP, DEFAULT_TEMPLATE, ClipEmbedder, edit_texts
from zerocon.metrics.common import batches, load_images, pair_folders, to_batch
from zerocon.metrics.structure import DEFAULT_DINO

EDIT_METRICS = ("clip_accuracy", "clip_score", "bg_lpips", "structure_distance")
TRANSLATION_METRICS = ("fid", "kid", "density", "coverage", "swd")

METRIC_INFO: dict[str, tuple[str, bool]] = {
    # key -> (label for tables and plots, higher is better)
    "clip_accuracy": ("CLIP acc. (%)", True),
    "clip_score": ("CLIP score", True),
    "bg_lpips": ("BG LPIPS", False),
    "structure_distance": ("Structure dist.", False),
    "fid": ("FID", False),
    "mfid": ("mFID", False),
    "kid": ("KID", False),
    "density": ("Density", True),
    "coverage": ("Coverage", True),
    "swd": ("SWD", False),
}


def _check_metrics(requested: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in requested if m not in allowed]
    if unknown:
        raise ZeroconError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if not requested:
        raise ZeroconError("no metric requested")
    return tuple(dict.fromkeys(requested))


@dataclass
class EditEvalConfig:
    """What to score and with which networks. Defaults follow the papers (see each module)."""

    inputs: str | os.PathLike
    outputs: str | os.PathLike
    source: str
    target: str
    metrics: tuple[str, ...] = EDIT_METRICS
    clip: str | None = DEFAULT_CLIP
    """CLIP hub id or folder (CLIP accuracy and score)."""
    dino: str | None = DEFAULT_DINO
    """DINO ViT hub id or folder (structure distance)."""
    lpips_backbone: str | None = None
    """ImageNet AlexNet/VGG-16 weights file for LPIPS (no default: torchvision downloads it, we cannot)."""
    lpips_net: str = "alex"
    lpips_heads: str | None = None
    masks: str | os.PathLike | None = None
    """Folder of object masks named like the inputs (white = object)."""
    segmenter: str | None = None
    """CLIPSeg hub id or folder, used when ``masks`` is not given."""
    template: str = DEFAULT_TEMPLATE
    batch_size: int = 8


def evaluate_edits(
    config: EditEvalConfig,
    clip: ClipEmbedder | None = None,
    dino: Any = None,
    lpips: Any = None,
    segmenter: Any = None,
) -> dict[str, Any]:
    """Score every edit in ``config.outputs`` against its input; networks may be injected (tests)."""
    metrics = _check_metrics(config.metrics, EDIT_METRICS)
    pairs = pair_folders(config.inputs, config.outputs)
    # 1. load the networks first, so a missing one fails before any work
    if {"clip_accuracy", "clip_score"} & set(metrics) and clip is None:
        clip = ClipEmbedder.from_pretrained(config.clip)
    if "structure_distance" in metrics and dino is None:
        from zerocon.metrics.structure import DinoKeyExtractor

        dino = DinoKeyExtractor.from_pretrained(config.dino)
    if "bg_lpips" in metrics:
        if lpips is None:
            from zerocon.metrics.lpips import load_lpips

            lpips = load_lpips(config.lpips_backbone, net=config.lpips_net, heads=config.lpips_heads)
        if config.masks is None and segmenter is None:
            from zerocon.metrics.masks import ClipSegSegmenter, missing_masks_error

            if config.segmenter is None:
                raise missing_masks_error()

            segmenter = ClipSegSegmenter.from_pretrained(config.segmenter)
    source_text, target_text = edit_texts(config.source, config.target, config.template)
    if clip is not None:
        text = clip.embed_texts([source_text, target_text])
        source_emb, target_emb = text[0], text[1]

    # 2. score the pairs batch by batch
    records: list[dict[str, Any]] = []
    for chunk in batches(pairs, config.batch_size):
        inputs = load_images([p[0] for p in chunk])
        outputs = load_images([p[1] for p in chunk])
        names = [p[0].stem for p in chunk]
        rows: list[dict[str, Any]] = [
            {"name": n, "input": str(p[0]), "output": str(p[1])} for n, p in zip(names, chunk)
        ]
        if clip is not None:
            image_emb = clip.embed_images(outputs)
            from zerocon.metrics.clip import clip_accuracy_per_image, clip_score_per_image

            correct = clip_accuracy_per_image(image_emb, source_emb, target_emb)
            score = clip_score_per_image(image_emb, target_emb)
            for row, ok, s in zip(rows, correct.tolist(), score.tolist()):
                if "clip_accuracy" in metrics:
                    row["clip_correct"] = bool(ok)
                if "clip_score" in metrics:
                    row["clip_score"] = s
        if dino is not None or lpips is not None:
            # compare at the edit's size (an editor may change the resolution)
            for i, (src, out) in enumerate(zip(inputs, outputs)):
                a, b = to_batch([src], size=out.size), to_batch([out])
                if dino is not None and "structure_distance" in metrics:
                    from zerocon.metrics.structure import structure_distance

                    rows[i]["structure_distance"] = float(structure_distance(dino, a, b)[0])
                if lpips is not None and "bg_lpips" in metrics:
                    from zerocon.metrics.lpips import background_lpips
                    from zerocon.metrics.masks import object_masks

                    mask = object_masks(
                        [src], [out], [names[i]], config.source, config.target, config.masks, segmenter
                    )
                    rows[i]["bg_lpips"] = float(background_lpips(lpips, a, b, mask)[0])
                    rows[i]["object_fraction"] = float(mask.mean())
        records.extend(rows)

    summary: dict[str, float] = {}
    if "clip_accuracy" in metrics:
        summary["clip_accuracy"] = 100.0 * sum(r["clip_correct"] for r in records) / len(records)
    for key in ("clip_score", "bg_lpips", "structure_distance"):
        if key in metrics:
            summary[key] = sum(r[key] for r in records) / len(records)
    settings = {k: v for k, v in asdict(config).items() if k not in ("inputs", "outputs")}
    settings.update(source_text=source_text, target_text=target_text)
    return {
        "kind": "edits",
        "inputs": str(config.inputs),
        "outputs": str(config.outputs),
        "count": len(records),
        "metrics": summary,
        "settings": _jsonable(settings),
        "per_image": records,
    }


@dataclass
class TranslationEvalConfig:
    """Real vs translated image folders; sub-folders present in both are scored as separate domains."""

    real: str | os.PathLike
    fake: str | os.PathLike
    metrics: tuple[str, ...] = TRANSLATION_METRICS
    inception: str | None = None
    """FID Inception weights for FID, KID, Density and Coverage: a state dict (pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth``) or ``.safetensors``, loaded as weights only."""
    inception_torchscript: str | None = None
    """Instead of ``inception``: a TorchScript Inception (``inception-2015-12-05.pt``). Loading it executes code
    from the file; give only a file you trust."""
    k: int = 5
    """Nearest neighbours for Density & Coverage (LANIT uses 5)."""
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    swd_levels: int = 3
    domains: tuple[str, ...] | None = None
    """Domain sub-folders to score; None = every sub-folder holding images in both folders (or none)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _domains(real: Path, fake: Path, wanted: Sequence[str] | None) -> dict[str, tuple[Path, Path]]:
    def subdirs(folder: Path) -> set[str]:
        return {d.name for d in folder.iterdir() if d.is_dir() and find_images([d])}

    for folder in (real, fake):
        if not folder.is_dir():
            raise ZeroconError(f"{folder}: folder not found")
    if wanted:
        missing = [d for d in wanted if not (real / d).is_dir() or not (fake / d).is_dir()]
        if missing:
            raise ZeroconError(f"domain(s) {', '.join(missing)} missing in {real} or {fake}")
        return {d: (real / d, fake / d) for d in wanted}
    common = sorted(subdirs(real) & subdirs(fake))
    if common and not find_images([fake]):
        return {d: (real / d, fake / d) for d in common}
    return {"all": (real, fake)}


def evaluate_translation(config: TranslationEvalConfig, features: Any = None) -> dict[str, Any]:
    """FID / KID / Density & Coverage / SWD of ``config.fake`` against ``config.real`` (per domain + mean)."""
    metrics = _check_metrics(config.metrics, TRANSLATION_METRICS)
    domains = _domains(Path(config.real), Path(config.fake), config.domains)
    needs_features = bool({"fid", "kid", "density", "coverage"} & set(metrics))
    if needs_features and features is None:
        from zerocon.metrics.fid import load_inception

        features = load_inception(config.inception, config.inception_torchscript)
    per_domain: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, (real_dir, fake_dir) in domains.items():
        real_images = load_images(image_folder(real_dir, recursive=False))
        fake_images = load_images(image_folder(fake_dir, recursive=False))
        counts[name] = {"real": len(real_images), "fake": len(fake_images)}
        scores: dict[str, float] = {}
        if needs_features:
            real_f, fake_f = features(real_images), features(fake_images)
            if "fid" in metrics:
                from zerocon.metrics.fid import frechet_distance

                scores["fid"] = frechet_distance(real_f, fake_f)
            if "kid" in metrics:
                from zerocon.metrics.fid import kernel_inception_distance

                scores["kid"], scores["kid_std"] = kernel_inception_distance(
                    real_f, fake_f, config.kid_subsets, config.kid_subset_size, config.seed
                )
            if {"density", "coverage"} & set(metrics):
                from zerocon.metrics.prdc import compute_prdc

                try:
                    prdc = compute_prdc(real_f, fake_f, k=config.k)
                except ValueError as exc:
                    raise ZeroconError(f"Density & Coverage of domain '{name}': {exc}") from exc
                for key in ("density", "coverage"):
                    if key in metrics:
                        scores[key] = getattr(prdc, key)
        if "swd" in metrics:
            from zerocon.metrics.swd import image_swd

            generator = torch.Generator().manual_seed(config.seed)
            scores["swd"] = float(
                image_swd(fake_images, reference=real_images, levels=config.swd_levels, generator=generator)[
                    "swd"
                ]
            )
        per_domain[name] = scores
    summary: dict[str, float] = {}
    keys = [k for k in ("fid", "kid", "density", "coverage", "swd") if k in metrics]
    for key in keys:
        values = [d[key] for d in per_domain.values()]
        summary[key] = sum(values) / len(values)
    if "fid" in metrics and len(per_domain) > 1:
        from zerocon.metrics.fid import mean_fid

        summary["mfid"] = mean_fid({d: s["fid"] for d, s in per_domain.items()})
    settings = {k: v for k, v in asdict(config).items() if k not in ("real", "fake")}
    return {
        "kind": "translation",
        "real": str(config.real),
        "fake": str(config.fake),
        "count": sum(c["fake"] for c in counts.values()),
        "metrics": summary,
        "per_domain": per_domain,
        "counts": counts,
        "settings": _jsonable(settings),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
