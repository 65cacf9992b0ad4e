"""``zerocon shapes``: render ShapesWorld scenes, train its small models, run ShapesBench."""

from __future__ import annotations

import argparse
from typing import Any

from zerocon.cli import comma_list


def register(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(name, help="the offline ShapesWorld: render scenes, train models, bench")
    sub = parser.add_subparsers(dest="shapes_command", metavar="SUBCOMMAND")

    render = sub.add_parser("render", help="write N scenes (images/, masks/, labels.jsonl) to a folder")
    render.add_argument("out", help="output folder")
    render.add_argument("-n", "--num", type=int, default=100, help="number of scenes (default 100)")
    render.add_argument("--seed", type=int, default=0, help="seed of the first scene (default 0)")
    render.add_argument("--shapes", type=comma_list, default=None, help="comma-separated shapes to allow")
    render.add_argument("--colors", type=comma_list, default=None, help="comma-separated object colours")
    render.add_argument("--backgrounds", type=comma_list, default=None, help="comma-separated backgrounds")
    render.add_argument("--distractor-prob", type=float, default=0.3)
    render.add_argument("--texture-prob", type=float, default=0.5)
    render.set_defaults(func=_render)
    assemble = sub.add_parser(
        "assemble", help="build the bundled pipeline/clip/metrics folder from a training run"
    )
    assemble.add_argument("--run", default="runs/shapes", help="training run folder (default runs/shapes)")
    assemble.add_argument("--out", default=None, help="output folder (default: the package's assets/shapes)")
    assemble.add_argument(
        "--base",
        default=None,
        help="a bundle whose models (and records) fill the stages the run did not train (e.g. the shipped one)",
    )
    assemble.add_argument(
        "--half-weights",
        action="store_true",
        help="store the UNet's and VAE's weights in float16 (loaded as float32)",
    )
    assemble.set_defaults(func=_assemble)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    _register_more(sub)


def _register_more(sub: Any) -> None:
    """Sub-commands that import heavy modules (training, bench) register here; a broken one fails loudly."""
    from zerocon.shapes import bench as _bench
    from zerocon.shapes import train_cli as _train

    _train.register(sub)
    _bench.register(sub)


def _assemble(args: argparse.Namespace) -> int:
    from zerocon.models import SHAPES_DIR
    from zerocon.shapes.assemble import assemble, bundle_size
    from zerocon.shapes.curves import plot_curves

    out = assemble(args.run, args.out or SHAPES_DIR, base=args.base, half_weights=args.half_weights)
    plot_curves(args.run, out / "curves.png")
    print(f"wrote {out} ({bundle_size(out) / 2**20:.1f} MB)")
    return 0


def _render(args: argparse.Namespace) -> int:
    from zerocon.errors import ZeroconError
    from zerocon.shapes.world import SceneFilter, write_dataset

    if args.num < 1:
        raise ZeroconError("--num must be at least 1")
    flt = SceneFilter(
        shapes=args.shapes,
        colors=args.colors,
        backgrounds=args.backgrounds,
        distractor_prob=args.distractor_prob,
        texture_prob=args.texture_prob,
    )
    flt.check()
    folder = write_dataset(args.out, args.num, args.seed, flt)
    print(f"wrote {args.num} scenes to {folder}")
    return 0
