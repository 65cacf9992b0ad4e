"""``zerocon eval``: the papers' metrics from folders of results.

    zerocon eval edits --inputs DIR --outputs DIR --source cat --target dog [--masks DIR] --out DIR
    zerocon eval translation --real DIR --fake DIR --inception WEIGHTS_FILE --out DIR
    zerocon eval compare RUN1 RUN2 … --out DIR

Each writes ``metrics.json``, ``metrics.md`` and ``metrics.png`` into ``--out``. ``--compare RUN …`` on
``edits`` / ``translation`` adds earlier runs (their ``--out`` folders) to the same table and plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zerocon.cli import comma_list
from zerocon.errors import ZeroconError


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    from zerocon.metrics.clip import DEFAULT_CLIP, DEFAULT_TEMPLATE
    from zerocon.metrics.evaluate import EDIT_METRICS, TRANSLATION_METRICS
    from zerocon.metrics.structure import DEFAULT_DINO

    parser = subparsers.add_parser(name, help="the papers' metrics for edits and translations")
    kinds = parser.add_subparsers(dest="eval_kind", metavar="KIND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="folder for metrics.json, metrics.md and metrics.png")
        p.add_argument(
            "--name", default=None, help="method name in the table (default: the results folder's name)"
        )
        p.add_argument(
            "--compare",
            nargs="+",
            default=[],
            metavar="RUN",
            help="earlier runs (their --out folders or metrics.json) to put in the same table and plot",
        )

    edits = kinds.add_parser(
        "edits", help="CLIP accuracy / score, background LPIPS, structure distance of edits"
    )
    edits.add_argument("--inputs", required=True, help="folder of original images")
    edits.add_argument(
        "--outputs",
        required=True,
        help="folder of edited images named like their inputs (or the OUT/<name>/edit.png folders of zerocon edit)",
    )
    edits.add_argument("--source", required=True, help="the source word, e.g. cat")
    edits.add_argument("--target", required=True, help="the target word, e.g. dog")
    edits.add_argument(
        "--metrics",
        type=comma_list,
        default=EDIT_METRICS,
        help=f"comma-separated subset of {','.join(EDIT_METRICS)} (default: all)",
    )
    edits.add_argument("--clip", default=DEFAULT_CLIP, help="CLIP hub id or folder (default: %(default)s)")
    edits.add_argument(
        "--template", default=DEFAULT_TEMPLATE, help="text for a word (default: '%(default)s')"
    )
    edits.add_argument(
        "--dino", default=DEFAULT_DINO, help="DINO ViT hub id or folder (default: %(default)s)"
    )
    edits.add_argument(
        "--lpips-backbone",
        default=None,
        help="ImageNet AlexNet (or VGG-16) weights file for LPIPS, e.g. torchvision's alexnet-owt-7be5be79.pth",
    )
    edits.add_argument("--lpips-net", default="alex", choices=("alex", "vgg"))
    edits.add_argument(
        "--lpips-heads", default=None, help="LPIPS v0.1 linear heads (default: the ones inside torchmetrics)"
    )
    edits.add_argument(
        "--masks", default=None, help="folder of object masks named like the inputs (white = object)"
    )
    edits.add_argument(
        "--segmenter",
        default=None,
        help="CLIPSeg hub id or folder to find the object when --masks is not given",
    )
    edits.add_argument("--batch-size", type=int, default=8)
    common(edits)
    edits.set_defaults(func=run_edits)

    trans = kinds.add_parser("translation", help="FID, KID, Density & Coverage, SWD (per domain + mean)")
    trans.add_argument(
        "--real", required=True, help="folder of real target-domain images (or one sub-folder per domain)"
    )
    trans.add_argument(
        "--fake", required=True, help="folder of translated images (same sub-folders as --real)"
    )
    trans.add_argument(
        "--metrics",
        type=comma_list,
        default=TRANSLATION_METRICS,
        help=f"comma-separated subset of {','.join(TRANSLATION_METRICS)} (default: all)",
    )
    trans.add_argument(
        "--inception",
        default=None,
        metavar="FILE",
        help="FID Inception-v3 weights for FID, KID, Density & Coverage: pytorch-fid's state dict "
        "pt_inception-2015-12-05-6726825d.pth or the same tensors as .safetensors (loaded as weights only)",
    )
    trans.add_argument(
        "--inception-torchscript",
        default=None,
        metavar="FILE",
        help="instead of --inception: a TorchScript Inception (inception-2015-12-05.pt of StyleGAN2-ADA / "
        "clean-fid). Loading it EXECUTES CODE FROM THE FILE: give only a file you trust",
    )
    trans.add_argument("--k", type=int, default=5, help="nearest neighbours for Density & Coverage")
    trans.add_argument("--kid-subsets", type=int, default=100)
    trans.add_argument("--kid-subset-size", type=int, default=1000)
    trans.add_argument(
        "--domains", nargs="+", default=None, help="domain sub-folders to score (default: all shared)"
    )
    trans.add_argument("--seed", type=int, default=0)
    common(trans)
    trans.set_defaults(func=run_translation)

    compare = kinds.add_parser("compare", help="put earlier runs in one table and one plot")
    compare.add_argument(
        "runs", nargs="+", metavar="RUN", help="--out folders (or metrics.json files) of earlier runs"
    )
    compare.add_argument("--out", required=True)
    compare.set_defaults(func=run_compare)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _finish(result: dict, args: argparse.Namespace, default_name: str) -> int:
    from zerocon.metrics.report import load_run, markdown_table, write_report

    result["method"] = args.name or default_name
    runs = [load_run(r) for r in args.compare] + [result]
    paths = write_report(runs, args.out)
    print(markdown_table(_flat(runs)), end="")
    print(f"wrote {paths['json']}, {paths['table']}, {paths['plot']}")
    return 0


def _flat(runs: list[dict]) -> list[dict]:
    from zerocon.metrics.report import flatten_runs

    return flatten_runs(runs)


def run_edits(args: argparse.Namespace) -> int:
    from zerocon.metrics.evaluate import EditEvalConfig, evaluate_edits

    if args.batch_size < 1:
        raise ZeroconError("--batch-size must be at least 1")
    config = EditEvalConfig(
        inputs=args.inputs,
        outputs=args.outputs,
        source=args.source,
        target=args.target,
        metrics=args.metrics,
        clip=args.clip,
        dino=args.dino,
        lpips_backbone=args.lpips_backbone,
        lpips_net=args.lpips_net,
        lpips_heads=args.lpips_heads,
        masks=args.masks,
        segmenter=args.segmenter,
        template=args.template,
        batch_size=args.batch_size,
    )
    return _finish(evaluate_edits(config), args, Path(args.outputs).resolve().name)


def run_translation(args: argparse.Namespace) -> int:
    from zerocon.metrics.evaluate import TranslationEvalConfig, evaluate_translation

    config = TranslationEvalConfig(
        real=args.real,
        fake=args.fake,
        metrics=args.metrics,
        inception=args.inception,
        inception_torchscript=args.inception_torchscript,
        k=args.k,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        seed=args.seed,
        domains=tuple(args.domains) if args.domains else None,
    )
    return _finish(evaluate_translation(config), args, Path(args.fake).resolve().name)


def run_compare(args: argparse.Namespace) -> int:
    from zerocon.metrics.report import load_run, markdown_table, write_report

    runs = _flat([load_run(r) for r in args.runs])
    paths = write_report(runs, args.out)
    print(markdown_table(runs), end="")
    print(f"wrote {paths['json']}, {paths['table']}, {paths['plot']}")
    return 0
