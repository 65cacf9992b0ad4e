"""The pix2pix-zero paper's cat -> dog protocol on real photos, for word swap, pix2pix-zero and pix2pix-zeroCon.

Every cat photo is captioned and inverted once (regularised DDIM inversion), then edited by each method from the
same inversion with Stable Diffusion v1.4, and the edits are scored with the Table-1 metrics of pix2pix-zero:
CLIP accuracy (↑), background LPIPS (↓) and structure distance (↓). Writes the edits, ``metrics.json``,
``metrics.md`` and ``metrics.png`` (all methods side by side) into ``--out`` and prints the table.

    python benchmarks/paper_cat2dog.py --model CompVis/stable-diffusion-v1-4 \\
        --lpips-backbone alexnet-owt-7be5be79.pth --segmenter CIDAS/clipseg-rd64-refined

Needs the SD v1.4 weights (hub id in the local Hugging Face cache, or a folder; ``--download`` lets the hub be
used), a CLIP (``--clip``), a DINO ViT (``--dino``), the LPIPS backbone and object masks (``--masks`` or
``--segmenter``). Whatever is missing stops the run with a message before any editing. On a GPU the paper's
50 steps take minutes per photo; ``--steps`` and ``--limit`` make smaller runs. The pix2pix-zero paper reports
(full method, LAION cats, Table 2 row E): CLIP acc. 92.4 %, BG LPIPS 0.182, structure distance 0.044.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "pix2pix-zero-test-images" / "cats"
DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
METHODS = ("word_swap", "pix2pix_zero", "zerocon")
TABLE1 = ("clip_accuracy", "bg_lpips", "structure_distance")


def build_parser() -> argparse.ArgumentParser:
    from zerocon.metrics.clip import DEFAULT_CLIP
    from zerocon.metrics.structure import DEFAULT_DINO

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="SD v1.4 hub id or folder (default: %(default)s)")
    p.add_argument("--download", action="store_true", help="allow downloading hub ids that are not cached")
    p.add_argument(
        "--images", default=str(DEFAULT_IMAGES), help="folder of cat photos (default: %(default)s)"
    )
    p.add_argument("--source", default="cat")
    p.add_argument("--target", default="dog")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: %(default)s)")
    p.add_argument("--metrics", default=",".join(TABLE1), help="comma-separated (default: %(default)s)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of inversion and edit (paper: 50)")
    p.add_argument("--limit", type=int, default=None, help="edit only the first N photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-templates", action="store_true", help="directions from the two words only (no sentence banks)"
    )
    p.add_argument("--clip", default=DEFAULT_CLIP)
    p.add_argument("--dino", default=DEFAULT_DINO)
    p.add_argument("--lpips-backbone", default=None)
    p.add_argument("--masks", default=None)
    p.add_argument("--segmenter", default=None)
    p.add_argument(
        "--captioner",
        default="auto",
        help="BLIP id or folder, or 'none' (captions 'a photo of a SOURCE'); auto: the model's own, else "
        "Salesforce/blip-image-captioning-base, as the paper (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_cat2dog"))
    return p


class MissingWeights(Exception):
    """The weights to run the protocol are not on this machine (message says how to get them)."""


def check_model_available(name: str, allow_download: bool) -> None:
    """Stop at once (no network wait) when ``name`` is neither a folder nor in the Hugging Face cache."""
    from zerocon.models import BUNDLED

    if name in BUNDLED or Path(name).expanduser().is_dir() or allow_download:
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "model_index.json")
    except Exception:  # an invalid repo id etc.: not cached either
        cached = None
    if not isinstance(cached, str):
        raise MissingWeights(
            f"Stable Diffusion weights '{name}' are not on this machine (not a folder, not in the Hugging Face "
            f"cache). Download them where there is a network ('huggingface-cli download {name} --local-dir "
            f"DIR') and pass --model DIR, or pass --download to fetch them now"
        )


def load_metric_networks(args: argparse.Namespace, metrics: tuple[str, ...]) -> dict[str, Any]:
    """Load every network the requested metrics need before any editing (a missing one stops the run)."""
    from zerocon.metrics.clip import ClipEmbedder

    nets: dict[str, Any] = {}
    if {"clip_accuracy", "clip_score"} & set(metrics):
        nets["clip"] = ClipEmbedder.from_pretrained(args.clip, device=args.device)
    if "structure_distance" in metrics:
        from zerocon.metrics.structure import DinoKeyExtractor

        nets["dino"] = DinoKeyExtractor.from_pretrained(args.dino, device=args.device)
    if "bg_lpips" in metrics:
        from zerocon.metrics.lpips import load_lpips
        from zerocon.metrics.masks import ClipSegSegmenter, missing_masks_error

        nets["lpips"] = load_lpips(args.lpips_backbone)
        if args.masks is None:
            if args.segmenter is None:
                raise missing_masks_error()
            nets["segmenter"] = ClipSegSegmenter.from_pretrained(args.segmenter)
    return nets


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Edit every photo with every method, score the edits and write the report; returns one run per method."""
    from zerocon.errors import ZeroconError
    from zerocon.images import image_folder
    from zerocon.io import save_image_atomic, write_json
    from zerocon.metrics.evaluate import EDIT_METRICS, EditEvalConfig, evaluate_edits
    from zerocon.metrics.report import markdown_table, write_report

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS] + [m for m in metrics if m not in EDIT_METRICS]
    if unknown:
        raise ZeroconError(f"unknown method/metric: {', '.join(unknown)}")
    if args.steps < 1:
        raise ZeroconError("--steps must be at least 1")
    photos = image_folder(args.images, recursive=False)[: args.limit]
    check_model_available(args.model, args.download)
    nets = load_metric_networks(args, metrics)
    from zerocon.edit.loading import load_edit_pipeline
    from zerocon.edit.pipeline import EditConfig

    pipe = load_edit_pipeline(args.model, captioner=args.captioner, device=args.device, dtype=args.dtype)
    pipe.set_progress_bar_config(disable=True)

    out = Path(args.out)
    timings: dict[str, float] = {m: 0.0 for m in methods}
    captions: dict[str, str] = {}
    templates = not args.no_templates
    for index, photo in enumerate(photos):
        base = EditConfig(
            num_inference_steps=args.steps,
            seed=args.seed,
            use_templates=templates,
            template_caption=args.captioner == "none",
        )
        inversion = pipe.invert_image(photo, source=args.source, config=base)
        captions[photo.stem] = inversion.caption
        for method in methods:
            start = time.perf_counter()
            config = replace(base, method=method)
            result = pipe.edit(
                photo, target=args.target, source=args.source, config=config, inversion=inversion
            )
            timings[method] += time.perf_counter() - start
            save_image_atomic(result.edit, out / method / f"{photo.stem}.png")
        print(f"[{index + 1}/{len(photos)}] {photo.name}: '{inversion.caption}'", file=sys.stderr)

    runs = []
    for method in methods:
        config = EditEvalConfig(
            inputs=args.images, outputs=out / method, source=args.source, target=args.target, metrics=metrics,
            clip=args.clip, dino=args.dino, lpips_backbone=args.lpips_backbone, masks=args.masks,
            segmenter=args.segmenter,
        )  # fmt: skip
        result = evaluate_edits(
            config, clip=nets.get("clip"), dino=nets.get("dino"), lpips=nets.get("lpips"),
            segmenter=nets.get("segmenter"),
        )  # fmt: skip
        result["method"] = method
        result["settings"].update(model=args.model, steps=args.steps, seed=args.seed, templates=templates)
        result["seconds_per_edit"] = timings[method] / max(1, len(photos))
        runs.append(result)
    write_report(runs, out)
    write_json(out / "captions.json", captions)
    print(markdown_table(runs), end="")
    return runs


def main(argv: list[str] | None = None) -> int:
    from zerocon.errors import ZeroconError

    args = build_parser().parse_args(argv)
    try:
        run(args)
    except MissingWeights as exc:
        print(f"paper_cat2dog: {exc}", file=sys.stderr)
        return 2
    except ZeroconError as exc:
        print(f"paper_cat2dog: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
