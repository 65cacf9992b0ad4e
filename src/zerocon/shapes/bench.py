"""ShapesBench: edit ShapesWorld scenes with each method and judge the result against ground truth.

For every held-out scene (seeds from :data:`~zerocon.shapes.data.BENCH_SEED`, never used in training or in
choosing any setting; ``split="tune"`` runs the same bench on the disjoint scenes of
:data:`~zerocon.shapes.data.TUNE_SEED` instead, where settings may be chosen) and every task, the target is a
full caption with one or two attributes changed:

- ``color``: the object's colour; ``shape``: its shape; ``both``: colour and shape; ``background``: the
  background colour.

Methods: ``word_swap``, ``pix2pix_zero`` and ``zerocon`` through :class:`ZeroConPipeline.edit` (inversion
shared by the three, source caption = the scene's true caption, no template banks since the world's
vocabulary has no template words), and ``sdedit``: encode, noise to ``sdedit_strength`` of the DDIM
trajectory, denoise with the target caption (classifier-free guidance, same scale as the editor).

Metrics, computed exactly with the oracle:

- ``edit_acc``: the oracle reads the target's shape, colour and background (changed and untouched ones);
- ``mask_iou``: IoU of the source object mask (ground truth) and the edited object mask (oracle);
- ``centroid_err`` (pixels) and ``scale_err`` (relative change of the farthest-pixel radius) — structure
  measures for shape swaps, where IoU cannot be 1;
- ``bg_err``: mean absolute error (0-1 scale) outside the union of the two masks dilated by one pixel
  (background preservation; for the background task, the error inside the source mask instead, i.e.
  object preservation, reported as ``obj_err``).

Each (scene, task) is run with several edit seeds; the tables give the mean and a 95 % confidence interval
(normal approximation over scene-seed pairs) and the between-seed spread of the means.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from zerocon.cli import comma_list, option_with_old_name
from zerocon.edit.config import GRADIENT_SCALES
from zerocon.edit.config import METHODS as EDIT_METHODS
from zerocon.edit.schedulers import describe_scheduler
from zerocon.edit.sdedit import sdedit
from zerocon.errors import ZeroconError
from zerocon.images import labelled_grid
from zerocon.io import save_image_atomic, write_bytes, write_json
from zerocon.shapes.data import BENCH_SEED, TUNE_SEED
from zerocon.shapes.oracle import mask_iou, read_scene
from zerocon.shapes.world import (
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    SHAPES,
    SceneFilter,
    SceneSpec,
    render,
    sample_spec,
)

TASKS = ("color", "shape", "both", "background")
SPLITS = {"bench": BENCH_SEED, "tune": TUNE_SEED}
"""First scene seed of each split: ShapesBench's reported scenes, and the scenes for choosing settings."""
METHODS = (*reversed(EDIT_METHODS), "sdedit")
"""The bench's methods: the editor's, from the baseline up (word_swap, pix2pix_zero, zerocon), then SDEdit."""


@dataclass
class BenchConfig:
    """What ShapesBench runs (defaults: 200 scenes x 3 seeds x 50 steps, every method and task)."""

    scenes: int = 200
    start: int = 0
    """Index of the first scene (to split one bench over several processes; see :func:`merge_results`)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 50
    """DDIM steps of inversion, edit and SDEdit."""
    tasks: tuple[str, ...] = TASKS
    methods: tuple[str, ...] = METHODS
    sdedit_strength: float = 0.6
    """Fraction of the trajectory SDEdit re-noises (set a priori, not tuned on these scenes)."""
    guidance_scale: float | None = None
    """Classifier-free guidance of every method (``None``: the model's own, the editor's default for it; the
    run records the value used)."""
    nce_weight: float | None = None
    """Weight of zerocon's PatchNCE guidance (``None``: the model's own; the run records the value used).
    ``zerocon@W`` methods set their own."""
    nce_scale: str | None = None
    """What the PatchNCE weights multiply (``None``: the model's own; see
    :class:`~zerocon.edit.config.PatchNCEGuidance`)."""
    model: str = "shapes"
    split: str = "bench"
    """``bench`` (the reported scenes) or ``tune`` (disjoint scenes for choosing settings)."""
    grid_scenes: int = 4
    """Scenes per task shown in the PNG grids."""
    extra: dict[str, Any] = field(default_factory=dict)


def target_spec(spec: SceneSpec, task: str, rng: np.random.Generator) -> SceneSpec:
    """The edit target of ``task`` for ``spec``: new attribute values drawn from ``rng`` (never the same)."""
    colors = [
        c
        for c in OBJECT_COLORS
        if c != spec.obj.color and (spec.distractor is None or c != spec.distractor.color)
    ]
    shapes = [s for s in SHAPES if s != spec.obj.shape]
    if task == "color":
        return spec.with_object(color=str(rng.choice(colors)))
    if task == "shape":
        return spec.with_object(shape=str(rng.choice(shapes)))
    if task == "both":
        return spec.with_object(color=str(rng.choice(colors)), shape=str(rng.choice(shapes)))
    if task == "background":
        return replace(
            spec, background=str(rng.choice([b for b in BACKGROUND_COLORS if b != spec.background]))
        )
    raise ZeroconError(f"unknown task '{task}'; known: {', '.join(TASKS)}")


def bench_scenes(n: int, split: str = "bench") -> list[SceneSpec]:
    """The first ``n`` scenes of ``split`` (fixed seeds, all captions, distractors and textures as in
    training)."""
    if split not in SPLITS:
        raise ZeroconError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    return [sample_spec(SPLITS[split] + i, SceneFilter()) for i in range(n)]


def _radius(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    return float(np.sqrt((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2).max())


def score_edit(
    source_img: np.ndarray, source_mask: np.ndarray, edited: np.ndarray, target: SceneSpec, task: str
) -> dict[str, float]:
    """The ShapesBench metrics of one edit (see the module docstring)."""
    reading = read_scene(edited)
    ok = (
        reading.shape == target.obj.shape
        and reading.color == target.obj.color
        and reading.background == target.background
    )
    out: dict[str, float] = {
        "edit_acc": float(ok),
        "target_attr_acc": float(
            {
                "color": reading.color == target.obj.color,
                "shape": reading.shape == target.obj.shape,
                "both": reading.color == target.obj.color and reading.shape == target.obj.shape,
                "background": reading.background == target.background,
            }[task]
        ),
        "mask_iou": mask_iou(source_mask, reading.mask),
    }
    src_c = np.argwhere(source_mask).mean(0)
    if reading.mask.any():
        out["centroid_err"] = float(np.linalg.norm(np.argwhere(reading.mask).mean(0) - src_c))
        out["scale_err"] = abs(_radius(reading.mask) / max(_radius(source_mask), 1.0) - 1.0)
    else:
        out["centroid_err"], out["scale_err"] = float("nan"), float("nan")
    diff = np.abs(edited.astype(np.float32) - source_img.astype(np.float32)).mean(-1) / 255.0
    union = ndimage.binary_dilation(source_mask | reading.mask, iterations=1)
    if task == "background":
        inner = ndimage.binary_erosion(source_mask, iterations=1)
        out["obj_err"] = float(diff[inner].mean()) if inner.any() else float("nan")
    else:
        out["bg_err"] = float(diff[~union].mean()) if (~union).any() else float("nan")
    return out


def _ci(values: list[float]) -> dict[str, float]:
    arr = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if len(arr) == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    half = 1.96 * arr.std(ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else float("nan")
    return {"mean": float(arr.mean()), "ci95": float(half), "n": int(len(arr))}


IN_PLACE_IOU = 0.5
"""Mask IoU with the source object from which an edit with the target's attributes counts as made in place (the
main job's test, ``benchmarks/main_job.py``)."""


def wilson_interval(hits: int, n: int) -> dict[str, float]:
    """A success rate ``hits / n`` with its 95 % Wilson score interval (sound at 0 or n hits, unlike
    rate ± 1.96 standard errors)."""
    if n <= 0:
        raise ValueError("a success rate needs at least one trial")
    z = 1.96
    rate = hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"rate": round(rate, 4), "low": round(centre - half, 4), "high": round(centre + half, 4), "n": n}


def editor_method(method: str) -> str:
    """The editor behind a bench method label (``zerocon@100`` -> ``zerocon``)."""
    return method.partition("@")[0]


def method_nce_weight(method: str, default: float) -> float:
    """The PatchNCE weight of a bench method: ``zerocon@W`` is zerocon with weight ``W`` (to compare weights
    in one run), any other method of :data:`METHODS` uses ``default``."""
    name, at, weight = method.partition("@")
    if name not in METHODS or (at and name != "zerocon"):
        raise ZeroconError(f"unknown method '{method}'; known: {', '.join(METHODS)}, zerocon@WEIGHT")
    if not at:
        return default
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ZeroconError(f"'{method}': the PatchNCE weight after '@' must be a number >= 0")
    return value


def run_bench(cfg: BenchConfig, out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Run ShapesBench and write ``results.json``, ``table.md`` and ``grid_<task>.png`` into ``out``."""
    from zerocon.edit.guidance import PatchNCEGuidance
    from zerocon.edit.pipeline import EditConfig, ZeroConPipeline

    for task in cfg.tasks:
        if task not in TASKS:
            raise ZeroconError(f"unknown task '{task}'; known: {', '.join(TASKS)}")
    for method in cfg.methods:
        method_nce_weight(method, 0.0)  # a bad method label fails before the model loads
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = ZeroConPipeline.from_pretrained(cfg.model)
    pipe.set_progress_bar_config(disable=True)
    model_defaults = EditConfig().for_model(pipe.config)
    if cfg.guidance_scale is None:
        cfg = replace(cfg, guidance_scale=model_defaults.guidance_scale)
    if cfg.nce_weight is None:
        cfg = replace(cfg, nce_weight=model_defaults.patch_nce.weight)
    if cfg.nce_scale is None:
        cfg = replace(cfg, nce_scale=model_defaults.patch_nce.scale)
    nce_weights = {m: method_nce_weight(m, cfg.nce_weight) for m in cfg.methods}
    specs = bench_scenes(cfg.start + cfg.scenes, cfg.split)[cfg.start :]
    records: list[dict[str, Any]] = []
    examples: dict[str, list[tuple[Image.Image, Image.Image, dict[str, Image.Image]]]] = {
        t: [] for t in cfg.tasks
    }
    start = time.time()
    for i, spec in enumerate(specs, start=cfg.start):
        scene = render(spec)
        image = scene.pil()
        rng = np.random.default_rng([SPLITS[cfg.split], i])
        targets = {task: target_spec(spec, task, rng) for task in cfg.tasks}
        for seed in cfg.seeds:
            edit_cfgs = {
                m: EditConfig(
                    method=editor_method(m),
                    num_inference_steps=cfg.steps,
                    guidance_scale=cfg.guidance_scale,
                    seed=seed,
                    use_templates=False,
                    patch_nce=PatchNCEGuidance(weight=nce_weights[m], scale=cfg.nce_scale),
                )
                for m in cfg.methods
                if m != "sdedit"
            }
            inversion = None
            if edit_cfgs:
                inversion = pipe.invert_image(
                    image, caption=spec.caption, config=next(iter(edit_cfgs.values()))
                )
            for task, tgt in targets.items():
                shown: dict[str, Image.Image] = {}
                for method in cfg.methods:
                    t0 = time.time()
                    if method == "sdedit":
                        edited = sdedit(
                            pipe, image, tgt.caption, cfg.sdedit_strength, cfg.steps, cfg.guidance_scale, seed
                        )
                    else:
                        edited = pipe.edit(
                            image,
                            target=tgt.caption,
                            caption=spec.caption,
                            config=edit_cfgs[method],
                            inversion=inversion,
                        ).edit
                    edited = edited.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)
                    metrics = score_edit(scene.image, scene.mask, np.asarray(edited), tgt, task)
                    records.append(
                        {
                            "scene": i,
                            "seed": seed,
                            "task": task,
                            "method": method,
                            "source": spec.caption,
                            "target": tgt.caption,
                            "seconds": round(time.time() - t0, 2),
                            **metrics,
                        }
                    )
                    shown[method] = edited
                if seed == cfg.seeds[0] and len(examples[task]) < cfg.grid_scenes:
                    examples[task].append((image, render(tgt).pil(), shown))
        if progress:
            print(f"scene {i + 1 - cfg.start}/{len(specs)} done, {time.time() - start:.0f}s", flush=True)
    scheduler = describe_scheduler(pipe.recipe_schedulers()[0], pipe.scheduler)
    result = write_results(out, cfg, records, round(time.time() - start, 1), scheduler=scheduler)
    for task, rows in examples.items():
        if rows:
            save_image_atomic(example_grid(rows, cfg.methods), out / f"grid_{task}.png")
    return result


def merge_results(folders: list[str | os.PathLike], out: str | os.PathLike) -> dict[str, Any]:
    """Merge the ``results.json`` of bench runs over disjoint scenes or seeds (same settings otherwise).

    The runs may run different methods (a later run adding scenes for some of them): each method is then
    summarised over the scenes it ran, and the table gives every row its number of scene-seed pairs."""
    parts = [_finished_run(Path(f)) for f in folders]
    base = dict(parts[0]["config"])
    free = ("start", "scenes", "seeds", "methods")
    for part in parts[1:]:
        other = {k: v for k, v in part["config"].items() if k not in free}
        if other != {k: v for k, v in base.items() if k not in free}:
            raise ZeroconError("bench runs with different settings cannot be merged")
    base["methods"] = list(dict.fromkeys(m for p in parts for m in p["config"]["methods"]))
    records = [r for p in parts for r in p["records"]]
    keys = [(r["scene"], r["seed"], r["task"], r["method"]) for r in records]
    if len(set(keys)) != len(keys):
        raise ZeroconError("bench runs overlap (same scene, seed, task and method twice)")
    scenes = sorted({r["scene"] for r in records})
    base.update(scenes=len(scenes), start=min(scenes), seeds=tuple(sorted({r["seed"] for r in records})))
    cfg = BenchConfig(**{**base, "tasks": tuple(base["tasks"]), "methods": tuple(base["methods"])})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = sum(p["seconds"] for p in parts)
    return write_results(out, cfg, records, seconds, merged_from=[str(f) for f in folders])


def _finished_run(folder: Path) -> dict[str, Any]:
    """The results.json of a finished bench run, or a one-line error naming the folder."""
    try:
        part = json.loads((folder / "results.json").read_text())
        if not isinstance(part, dict) or not {"config", "records", "seconds"} <= part.keys():
            raise ValueError("not a ShapesBench result")
    except (OSError, ValueError) as exc:
        raise ZeroconError(f"--merge: {folder} holds no finished bench run ({exc})") from exc
    return part


def write_results(
    out: Path, cfg: BenchConfig, records: list[dict[str, Any]], seconds: float, **extra: Any
) -> dict[str, Any]:
    """Summarise ``records`` and write ``results.json`` and ``table.md`` into ``out``; returns the result."""
    summary, paired = summarise(records, cfg), paired_differences(records, cfg)
    result = {
        "config": asdict(cfg),
        "seconds": seconds,
        "summary": summary,
        "paired": paired,
        "records": records,
        **extra,
    }
    write_json(out / "results.json", result)
    write_bytes(out / "table.md", markdown_table(summary, cfg, paired).encode())
    return result


def summarise(records: list[dict[str, Any]], cfg: BenchConfig) -> dict[str, Any]:
    keys = ("edit_acc", "target_attr_acc", "mask_iou", "centroid_err", "scale_err", "bg_err", "obj_err")
    summary: dict[str, Any] = {}
    for task in cfg.tasks:
        for method in cfg.methods:
            rows = [r for r in records if r["task"] == task and r["method"] == method]
            entry: dict[str, Any] = {}
            for key in keys:
                values = [r[key] for r in rows if key in r]
                if values:
                    entry[key] = _ci(values)
                    per_seed = [
                        np.nanmean([r[key] for r in rows if r["seed"] == s and key in r]) for s in cfg.seeds
                    ]
                    entry[key]["seed_means"] = [float(v) for v in per_seed]
            summary[f"{task}/{method}"] = entry
    return summary


PAIRED_KEYS = ("edit_acc", "mask_iou", "centroid_err", "bg_err", "obj_err")


def paired_differences(
    records: list[dict[str, Any]], cfg: BenchConfig, reference: str = "pix2pix_zero"
) -> dict[str, Any]:
    """Per task, each zerocon variant minus ``reference`` on the same scene and seed: mean and 95 % CI of the
    differences (the paper's claim is about this comparison; pairing removes the scene-to-scene spread)."""
    variants = [m for m in cfg.methods if editor_method(m) == "zerocon"]
    if reference not in cfg.methods or not variants:
        return {}
    refs = {(r["task"], r["scene"], r["seed"]): r for r in records if r["method"] == reference}
    diffs = {(t, m): {key: [] for key in PAIRED_KEYS} for t in cfg.tasks for m in variants}
    for row in records:  # one pass: each variant's record against the reference's of its scene and seed
        bucket = diffs.get((row["task"], row["method"]))
        ref = refs.get((row["task"], row["scene"], row["seed"]))
        if bucket is None or ref is None:
            continue
        for key in PAIRED_KEYS:
            if key in row and key in ref:
                bucket[key].append(row[key] - ref[key])
    return {
        f"{task}/{method} - {reference}": {k: _ci(v) for k, v in per_key.items() if v}
        for (task, method), per_key in diffs.items()
    }


def markdown_table(summary: dict[str, Any], cfg: BenchConfig, paired: dict[str, Any] | None = None) -> str:
    cols = [
        ("edit_acc", "edit acc ↑"),
        ("mask_iou", "mask IoU ↑"),
        ("centroid_err", "centroid err px ↓"),
        ("scale_err", "scale err ↓"),
        ("bg_err", "background err ↓"),
        ("obj_err", "object err ↓"),
    ]
    lines = [
        f"ShapesBench: {cfg.scenes} held-out scenes ({cfg.split} split) x {len(cfg.seeds)} seeds, "
        f"{cfg.steps} DDIM steps, "
        f"guidance {cfg.guidance_scale}, PatchNCE weight {cfg.nce_weight}, SDEdit strength {cfg.sdedit_strength}. "
        "Mean ± 95 % CI; n = scene-seed pairs behind the row.",
        "",
        "| task | method | n | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for key, entry in summary.items():
        task, method = key.split("/")
        cells = []
        for name, _ in cols:
            if name in entry and entry[name]["n"]:
                cells.append(f"{entry[name]['mean']:.3f} ± {entry[name]['ci95']:.3f}")
            else:
                cells.append("–")
        lines.append(f"| {task} | {method} | {_rows(entry)} | " + " | ".join(cells) + " |")
    if paired:
        lines += [
            "",
            "Paired differences (same scene and seed), mean ± 95 % CI:",
            "",
            "| task | comparison | n | "
            + " | ".join(c[1].replace(" ↑", "").replace(" ↓", "") for c in cols if c[0] in PAIRED_KEYS)
            + " |",
            "|---|---|---|" + "---|" * sum(c[0] in PAIRED_KEYS for c in cols),
        ]
        for key, entry in paired.items():
            task, comparison = key.split("/")
            cells = [
                f"{entry[name]['mean']:+.3f} ± {entry[name]['ci95']:.3f}"
                if entry.get(name, {}).get("n")
                else "–"
                for name, _ in cols
                if name in PAIRED_KEYS
            ]
            lines.append(
                f"| {task} | {comparison.replace(' - ', ' − ')} | {_rows(entry)} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines) + "\n"


def _rows(entry: dict[str, Any]) -> int:
    """Scene-seed pairs behind a table row (its edit accuracy is defined for every record)."""
    return int(entry.get("edit_acc", {}).get("n", 0))


def example_grid(
    rows: list[tuple[Image.Image, Image.Image, dict[str, Image.Image]]], methods: tuple[str, ...]
) -> Image.Image:
    """Rows: source | ideal target render | each method's edit; a header line names the columns."""
    cells = [[src, ideal, *[edits[m] for m in methods]] for src, ideal, edits in rows]
    return labelled_grid(cells, ["source", "ideal", *methods], cell=96)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "bench", help="ShapesBench: edit held-out scenes with every method, judge with the oracle"
    )
    parser.add_argument("--out", default="runs/shapesbench")
    parser.add_argument("--model", default="shapes")
    parser.add_argument(
        "--split", default="bench", choices=sorted(SPLITS), help="reported scenes, or scenes for tuning"
    )
    parser.add_argument("--scenes", type=int, default=BenchConfig.scenes)
    parser.add_argument("--start", type=int, default=0, help="index of the first scene (split runs)")
    parser.add_argument(
        "--merge", nargs="+", default=None, metavar="DIR", help="merge finished runs into --out"
    )
    parser.add_argument(
        "--seeds", type=lambda s: tuple(int(v) for v in comma_list(s)), default=BenchConfig().seeds
    )
    parser.add_argument("--steps", type=int, default=BenchConfig.steps)
    parser.add_argument("--tasks", type=comma_list, default=TASKS)
    parser.add_argument("--methods", type=comma_list, default=METHODS)
    parser.add_argument("--sdedit-strength", type=float, default=BenchConfig.sdedit_strength)
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the model's")
    option = option_with_old_name(parser)
    option(
        "--patch-nce-weight",
        "--nce-weight",
        type=float,
        default=None,
        help="zerocon's PatchNCE (default: the model's)",
    )
    option(
        "--patch-nce-scale",
        "--nce-scale",
        default=None,
        choices=GRADIENT_SCALES,
        help="what --patch-nce-weight multiplies (default: the model's)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU is shared)")
    parser.set_defaults(func=_bench_cmd)


def _bench_cmd(args: Any) -> int:
    torch.set_num_threads(max(1, args.threads))
    if args.merge:
        merge_results(args.merge, args.out)
        print((Path(args.out) / "table.md").read_text())
        return 0
    if args.scenes < 1 or not args.seeds or args.steps < 1:
        raise ZeroconError("--scenes, --seeds and --steps must be positive")
    cfg = BenchConfig(
        scenes=args.scenes,
        start=args.start,
        seeds=args.seeds,
        steps=args.steps,
        tasks=args.tasks,
        methods=args.methods,
        sdedit_strength=args.sdedit_strength,
        guidance_scale=args.guidance_scale,
        nce_weight=args.patch_nce_weight,
        nce_scale=args.patch_nce_scale,
        model=args.model,
        split=args.split,
    )
    run_bench(cfg, args.out)
    print((Path(args.out) / "table.md").read_text())
    print(f"wrote {args.out}/results.json, table.md, grid_*.png")
    return 0
