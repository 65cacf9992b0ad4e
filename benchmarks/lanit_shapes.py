"""Does LANIT learn in ShapesWorld? Pseudo-label F1, translation accuracy by the oracle, Density & Coverage.

Unlabeled 64x64 scenes (one object, no distractor; textured backgrounds half of the time) are the training
set; the domain words are the six object colours and the four shapes; the pseudo-labels come from the shipped
ShapesWorld CLIP. Ground truth is used only here, for measuring:

* ``data``:   render the training folder and a held-out evaluation set (labels kept aside in labels.jsonl).
* ``labels``: pseudo-label precision / recall / F1 of the hand-written prompts and, with ``--run``, of the
              run's learned (EMA) prompts, against the true colour + shape of each evaluation scene.
* ``eval``:   translate evaluation scenes with a run (latent-guided: change the colour, the shape, or both;
              reference-guided: take a reference scene's colour and shape) and score with the oracle: the
              requested attributes must be read back and the others (background; the untouched attribute)
              kept. Density & Coverage (k = 5) with CLIP image features, per target word, averaged. Writes
              results.json, results.md and sample grids.

Example::

    python benchmarks/lanit_shapes.py data --out /work/runs/lanit_shapes
    zerocon lanit train --preset shapes --data /work/runs/lanit_shapes/train \
        --domains "red,green,blue,yellow,purple,orange,circle,square,triangle,star" --out /work/runs/lanit_shapes/run
    python benchmarks/lanit_shapes.py labels --out /work/runs/lanit_shapes --run /work/runs/lanit_shapes/run
    python benchmarks/lanit_shapes.py eval --out /work/runs/lanit_shapes --run /work/runs/lanit_shapes/run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from zerocon.images import labelled_grid, pil_to_tensor, tensor_to_pil
from zerocon.io import load_checkpoint, save_image_atomic, write_json
from zerocon.lanit.labels import LabelConfig, pseudo_labels
from zerocon.lanit.prompts import PromptLearner, encode_images, load_clip, resolve_templates
from zerocon.lanit.translate import Translator
from zerocon.metrics.labels import label_scores
from zerocon.metrics.prdc import compute_prdc

COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
DOMAINS = COLORS + SHAPES
TRAIN_SEED, EVAL_SEED, REAL_SEED = 0, 5_000_000, 6_000_000


def render(out: Path, n_train: int, n_eval: int) -> None:
    from zerocon.shapes.world import SceneFilter, write_dataset

    flt = SceneFilter(distractor_prob=0.0)
    write_dataset(out / "train", n_train, TRAIN_SEED, flt, masks=False)
    write_dataset(out / "eval", n_eval, EVAL_SEED, flt, masks=False)
    write_dataset(out / "real", n_eval, REAL_SEED, flt, masks=False)
    print(f"wrote {n_train} training and 2 x {n_eval} evaluation scenes under {out}")


def load_split(folder: Path, limit: int | None = None) -> tuple[torch.Tensor, list[dict]]:
    from PIL import Image

    records = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines() if line]
    records = records[:limit] if limit else records
    images = torch.stack([pil_to_tensor(Image.open(folder / r["file"]).convert("RGB")) for r in records])
    return images, records


def truth_matrix(records: list[dict]) -> np.ndarray:
    truth = np.zeros((len(records), len(DOMAINS)), dtype=np.int64)
    for i, r in enumerate(records):
        truth[i, DOMAINS.index(r["color"])] = 1
        truth[i, DOMAINS.index(r["shape"])] = 1
    return truth


def _features(clip, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encode_images(clip, images[i : i + batch]) for i in range(0, len(images), batch)])


def label_report(clip, prompts: PromptLearner, feats: torch.Tensor, truth: np.ndarray) -> dict:
    with torch.no_grad():
        domain, base = prompts(clip)
    out = {}
    for name, cfg in (("adaptive", LabelConfig()), ("adaptive_top2", LabelConfig(top_k=2))):
        labels, _ = pseudo_labels(feats, domain, base, cfg)
        scores = label_scores(labels.numpy(), truth, DOMAINS)
        out[name] = {
            "f1": scores.f1,
            "precision": scores.precision,
            "recall": scores.recall,
            "micro_f1": scores.micro["f1"],
            "exact_match": scores.exact_match,
            "no_domain": float((labels.sum(1) == 0).float().mean()),
            "domains_per_image": float(labels.sum(1).mean()),
            "per_domain_f1": {k: v["f1"] for k, v in scores.per_domain.items()},
        }
    return out


def run_labels(out: Path, run: Path | None, clip_name: str, templates: str) -> dict:
    images, records = load_split(out / "eval")
    truth = truth_matrix(records)
    clip = load_clip(clip_name)
    feats = _features(clip, images)
    result = {}
    hand = PromptLearner(clip, resolve_templates(templates), DOMAINS)
    result["hand_written_prompts"] = label_report(clip, hand, feats, truth)
    if run is not None:
        tensors, config = load_checkpoint(run / "checkpoint")
        method = config["method"]
        for name in ("prompts", "prompts_ema"):
            learned = PromptLearner(clip, resolve_templates(method["templates"]), method["domains"])
            prefix = f"{name}."
            learned.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors["networks"].items() if k.startswith(prefix)}
            )
            result[f"learned_{name}"] = label_report(clip, learned, feats, truth)
        result["run_step"] = config["step"]
        result["prompt_start"] = method.get("prompt_start")
    result["n_images"] = len(records)
    write_json(out / "labels.json", result)
    for key, value in result.items():
        if isinstance(value, dict):
            a = value["adaptive"]
            print(f"{key:24s} F1 {a['f1']:.3f}  P {a['precision']:.3f}  R {a['recall']:.3f}  "
                  f"exact {a['exact_match']:.3f}  none {a['no_domain']:.3f}  top2-F1 {value['adaptive_top2']['f1']:.3f}")  # fmt: skip
    return result


def oracle_read(image: torch.Tensor):
    from zerocon.shapes.oracle import read_scene

    return read_scene(np.asarray(tensor_to_pil(image)))


def run_eval(out: Path, run: Path, clip_name: str, n: int, seed: int) -> dict:
    images, records = load_split(out / "eval", n)
    translator = Translator.from_checkpoint(run)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    tasks: dict[str, list[dict]] = {"colour": [], "shape": [], "both": []}
    fakes: dict[str, list[torch.Tensor]] = {w: [] for w in DOMAINS}
    for i, r in enumerate(records):
        colour = str(rng.choice([c for c in COLORS if c != r["color"]]))
        shape = str(rng.choice([s for s in SHAPES if s != r["shape"]]))
        for task, (c, s) in (
            ("colour", (colour, r["shape"])),
            ("shape", (r["color"], shape)),
            ("both", (colour, shape)),
        ):
            fake = translator.latent(images[i : i + 1], [c, s], samples=1, generator=gen)[0, 0]
            reading = oracle_read(fake)
            tasks[task].append({
                "colour_ok": reading.color == c, "shape_ok": reading.shape == s,
                "background_kept": reading.background == r["background"],
            })  # fmt: skip
            fakes[c].append(fake)
            fakes[s].append(fake)
    result: dict = {"n_images": len(records), "latent": {}}
    for task, rows in tasks.items():
        ok = [a["colour_ok"] and a["shape_ok"] and a["background_kept"] for a in rows]
        result["latent"][task] = {
            "accuracy": float(np.mean(ok)),
            "colour_ok": float(np.mean([a["colour_ok"] for a in rows])),
            "shape_ok": float(np.mean([a["shape_ok"] for a in rows])),
            "background_kept": float(np.mean([a["background_kept"] for a in rows])),
        }
    # reference-guided: a reference scene's colour and shape (its domains from the run's CLIP pseudo-labels)
    ref_rows = []
    order = rng.permutation(len(records))
    for i, j in enumerate(order):
        r, ref = records[i], records[int(j)]
        if ref["color"] == r["color"] and ref["shape"] == r["shape"]:
            continue
        try:
            fake = translator.reference(images[i : i + 1], images[int(j) : int(j) + 1])[0]
        except Exception as exc:  # a reference matching no domain word
            ref_rows.append({"ok": False, "skipped": str(exc)[:80]})
            continue
        reading = oracle_read(fake)
        ref_rows.append({
            "ok": reading.color == ref["color"] and reading.shape == ref["shape"] and reading.background == r["background"],
            "colour_ok": reading.color == ref["color"], "shape_ok": reading.shape == ref["shape"],
        })  # fmt: skip
    result["reference"] = {
        "accuracy": float(np.mean([a["ok"] for a in ref_rows])),
        "colour_ok": float(np.mean([a.get("colour_ok", False) for a in ref_rows])),
        "shape_ok": float(np.mean([a.get("shape_ok", False) for a in ref_rows])),
        "unlabelled_references": sum("skipped" in a for a in ref_rows),
        "n": len(ref_rows),
    }
    # Density & Coverage with CLIP image features, per target word, against real scenes having that word
    clip = load_clip(clip_name)
    real_images, real_records = load_split(out / "real")
    real_feats = _features(clip, real_images)
    real_truth = truth_matrix(real_records)
    src_feats = _features(clip, images)
    src_truth = truth_matrix(records)
    per_word, baseline = {}, {}
    for w, items in fakes.items():
        col = DOMAINS.index(w)
        reals = real_feats[real_truth[:, col] == 1]
        if len(items) <= 5:
            continue  # too few translations to this word for k = 5 neighbourhoods
        fake_feats = _features(clip, torch.stack(items))
        d = compute_prdc(reals.numpy(), fake_feats.numpy(), k=5)
        per_word[w] = {
            "density": d.density,
            "coverage": d.coverage,
            "n_fake": len(items),
            "n_real": len(reals),
        }
        others = src_feats[src_truth[:, col] == 0]  # the untranslated sources of other domains
        b = compute_prdc(reals.numpy(), others.numpy(), k=5)
        baseline[w] = {"density": b.density, "coverage": b.coverage}
    result["dc_per_word"] = per_word
    result["dc_mean"] = {
        k: float(np.mean([v[k] for v in per_word.values()])) for k in ("density", "coverage")
    }
    result["dc_sources_mean"] = {
        k: float(np.mean([v[k] for v in baseline.values()])) for k in ("density", "coverage")
    }
    real_rows = truth_matrix(real_records)
    del real_rows
    write_grids(out, translator, images, records, seed)
    write_json(out / "results.json", result)
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return result


def write_grids(
    out: Path, translator: Translator, images: torch.Tensor, records: list[dict], seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    targets = [
        ("red", "circle"),
        ("blue", "square"),
        ("yellow", "triangle"),
        ("purple", "star"),
        ("green", "star"),
        ("orange", "square"),
    ]
    rows = []
    for i in range(8):
        row = [tensor_to_pil(images[i])]
        for c, s in targets:
            row.append(tensor_to_pil(translator.latent(images[i : i + 1], [c, s], 1, gen)[0, 0]))
        rows.append(row)
    save_image_atomic(
        labelled_grid(rows, ["input"] + [f"{c} {s}" for c, s in targets]).resize(
            (64 * 7 * 2, (12 + 64 * 8) * 2), 0
        ),
        out / "grid_latent.png",
    )
    # several random styles for one target
    rows = []
    for i in range(4):
        outs = translator.latent(images[i : i + 1], ["blue", "star"], 5, gen)[0]
        rows.append([tensor_to_pil(images[i])] + [tensor_to_pil(o) for o in outs])
    save_image_atomic(labelled_grid(rows, ["input"] + ["blue star"] * 5), out / "grid_styles.png")
    # reference-guided: rows = sources, columns = references
    refs = images[8:13]
    rows = [[tensor_to_pil(images[i])] + [tensor_to_pil(translator.reference(images[i : i + 1], refs[j : j + 1])[0]) for j in range(len(refs))] for i in range(4)]  # fmt: skip
    header = ["src\\ref"] + [
        f"{records[8 + j]['color'][:3]} {records[8 + j]['shape'][:4]}" for j in range(len(refs))
    ]
    top = [tensor_to_pil(torch.ones(3, 64, 64))] + [tensor_to_pil(r) for r in refs]
    save_image_atomic(labelled_grid([top] + rows, header), out / "grid_reference.png")


def markdown(result: dict) -> str:
    lines = ["| task | accuracy | colour read | shape read | background kept |", "|---|---|---|---|---|"]
    for task, v in result["latent"].items():
        lines.append(
            f"| latent: {task} | {v['accuracy']:.3f} | {v['colour_ok']:.3f} | {v['shape_ok']:.3f} | {v['background_kept']:.3f} |"
        )
    r = result["reference"]
    lines.append(
        f"| reference (colour+shape) | {r['accuracy']:.3f} | {r['colour_ok']:.3f} | {r['shape_ok']:.3f} | - |"
    )
    lines += [
        "",
        "| D&C (CLIP features, k=5, mean over target words) | density | coverage |",
        "|---|---|---|",
    ]
    lines.append(
        f"| LANIT translations | {result['dc_mean']['density']:.3f} | {result['dc_mean']['coverage']:.3f} |"
    )
    lines.append(
        f"| untranslated sources of other domains | {result['dc_sources_mean']['density']:.3f} | {result['dc_sources_mean']['coverage']:.3f} |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=("data", "labels", "eval"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--clip", default="shapes-clip")
    parser.add_argument("--templates", default="shapes")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-eval", type=int, default=600)
    parser.add_argument("--n", type=int, default=300, help="evaluation scenes to translate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "data":
        render(args.out, args.n_train, args.n_eval)
    elif args.stage == "labels":
        run_labels(args.out, args.run, args.clip, args.templates)
    else:
        if args.run is None:
            parser.error("eval needs --run")
        run_eval(args.out, args.run, args.clip, args.n, args.seed)


if __name__ == "__main__":
    main()
