"""How often CLIP accuracy and the oracle agree on real ShapesWorld edits (the bundled editor and CLIP).

Edits the first ``--scenes`` ShapesBench scenes (split ``--split``) with each method of ``--methods`` for the
four tasks and prints one JSON object: the agreement of the two judges, each judge's accuracy, and how often
each says yes where the other says no (see :mod:`zerocon.shapes.agreement`).

Usage: ``python benchmarks/shapes_clip_agreement.py [--scenes 24] [--steps 20] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from zerocon.io import emit_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", default="word_swap,pix2pix_zero,zerocon")
    parser.add_argument("--split", default="bench")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.metrics.clip import ClipEmbedder
    from zerocon.shapes.agreement import clip_oracle_agreement

    pipe = ZeroConPipeline.from_pretrained("shapes")
    pipe.set_progress_bar_config(disable=True)
    clip = ClipEmbedder.from_pretrained("shapes-clip")
    methods = tuple(args.methods.split(","))
    report = {
        "benchmark": "shapes_clip_agreement",
        "command": " ".join(["python", *sys.argv]),
        "split": args.split,
        "scenes": args.scenes,
        "ddim_steps": args.steps,
        "methods": list(methods),
        "edit_defaults": dict(pipe.config.get("edit_defaults") or {}),
    }
    report.update(clip_oracle_agreement(pipe, clip, args.scenes, methods, args.steps, args.split))
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
