"""Edit accuracy against structure for several ShapesBench runs: one JSON object and one scatter plot.

Each run (a ``zerocon shapes bench --out DIR`` folder) is given as ``LABEL=DIR``; every method in it becomes
one point: mean edit accuracy over its tasks (x) against mean object-mask IoU over the tasks that keep the
object (colour, shape, both; y), with background error and centroid error in the JSON. Typical use: one run
per PatchNCE weight on the ``tune`` split, to see what the contrastive term buys and costs.

Example::

    python benchmarks/shapes_tradeoff.py --out /tmp/nce.png --json /tmp/nce.json \\
        "λ=1=/tmp/w1" "λ=100=/tmp/w100" "p2p-zero=/tmp/p2pz"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from zerocon.io import atomic_path, write_json
from zerocon.shapes.bench import editor_method, method_nce_weight

OBJECT_TASKS = ("color", "shape", "both")


def summarise(run: Path) -> dict[str, dict[str, float]]:
    """Per method of one bench run: mean edit accuracy (all tasks), and mask IoU, background and centroid
    error averaged over the object-keeping tasks."""
    record = json.loads((run / "results.json").read_text())
    out: dict[str, dict[str, float]] = {}
    for method in record["config"]["methods"]:
        rows = {k.split("/")[0]: v for k, v in record["summary"].items() if k.split("/")[1] == method}
        kept = [rows[t] for t in OBJECT_TASKS if t in rows]
        out[method] = {
            "edit_acc": float(np.mean([r["edit_acc"]["mean"] for r in rows.values()])),
            "mask_iou": float(np.mean([r["mask_iou"]["mean"] for r in kept])),
            "bg_err": float(np.mean([r["bg_err"]["mean"] for r in kept])),
            "centroid_err": float(np.mean([r["centroid_err"]["mean"] for r in kept])),
            "edit_acc_per_task": {t: r["edit_acc"]["mean"] for t, r in rows.items()},
            "scenes": record["config"]["scenes"],
            "seeds": len(record["config"]["seeds"]),
            "split": record["config"]["split"],
            "method": editor_method(method),
            "nce_weight": method_nce_weight(method, record["config"]["nce_weight"]),
        }
    return out


def plot(points: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, p in points.items():
        ax.scatter(p["edit_acc"], p["mask_iou"], s=30)
        ax.annotate(
            label, (p["edit_acc"], p["mask_iou"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    ax.set_xlabel("edit accuracy (mean over tasks)")
    ax.set_ylabel("mask IoU (colour, shape, both)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=DIR")
    parser.add_argument("--out", required=True, help="PNG scatter plot")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args()
    points: dict[str, dict[str, float]] = {}
    for item in args.runs:
        label, _, folder = item.rpartition("=")
        if not label:
            parser.error(f"expected LABEL=DIR, got {item!r}")
        per_method = summarise(Path(folder))
        for method, summary in per_method.items():
            points[label if len(per_method) == 1 else f"{label} {method}"] = summary
    plot(points, Path(args.out))
    result = {"points": points}
    print(json.dumps(result))
    if args.json:
        write_json(Path(args.json), result)


if __name__ == "__main__":
    main()
