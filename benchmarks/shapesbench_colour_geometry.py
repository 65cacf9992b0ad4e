"""ShapesBench's colour swaps, split by the colours' geometry around the background.

Reads a ShapesBench ``results.json`` and splits its colour-swap runs by :func:`zerocon.shapes.world.colour_alignment`
of source colour, target colour and background: below 0 the background lies between the two colours (as gray
between red and blue, the main job's edit), where a model of ShapesWorld finds "the object gone, another drawn
elsewhere" a likelier reading of the noised input than "the object recoloured in place". Per method and group:
runs, mean edit accuracy, mean mask IoU with the source object, and the in-place success rate (attributes
right and mask IoU >= 0.5) with its 95 % Wilson interval.

Usage: ``python benchmarks/shapesbench_colour_geometry.py [RESULTS.json] [--out FILE.json]``; RESULTS defaults
to the latest full run, ``benchmarks/shapesbench_2026-12-01/results.json``; prints one JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from zerocon.io import emit_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "benchmarks" / "shapesbench_2026-12-01" / "results.json"


def main(argv: list[str] | None = None) -> int:
    from zerocon.shapes.bench import IN_PLACE_IOU, wilson_interval
    from zerocon.shapes.world import colour_alignment, parse_caption

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    opposed_pairs: set[str] = set()
    for record in json.loads(args.results.read_text())["records"]:
        if record["task"] != "color":
            continue
        source, target = parse_caption(record["source"]), parse_caption(record["target"])
        cosine = colour_alignment(source["color"], target["color"], source["background"])
        group = "background_between" if cosine < 0 else "background_aside"
        if cosine < 0:
            opposed_pairs.add(f"{source['color']}->{target['color']} on {source['background']}")
        groups.setdefault((record["method"], group), []).append((record["edit_acc"], record["mask_iou"]))

    summary: dict[str, dict] = {}
    for (method, group), runs in sorted(groups.items()):
        acc, iou = np.array(runs, dtype=np.float64).T
        in_place = int(np.sum((acc == 1.0) & (iou >= IN_PLACE_IOU)))
        summary.setdefault(method, {})[group] = {
            "runs": len(runs),
            "edit_acc": round(float(acc.mean()), 3),
            "mask_iou": round(float(iou.mean()), 3),
            "in_place_success": wilson_interval(in_place, len(runs)),
        }
    path = args.results.resolve()
    report = {
        "benchmark": "shapesbench_colour_geometry",
        "command": " ".join(["python", *sys.argv]),
        "results": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "groups": {
            "background_between": "colour_alignment < 0: the background lies between source and target colour",
            "background_aside": "colour_alignment >= 0",
        },
        "pairs_with_background_between": sorted(opposed_pairs),
        "by_method": summary,
    }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
