"""``zerocon lanit train`` and ``zerocon lanit translate``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from zerocon.errors import ZeroconError


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="LANIT: multi-domain translation from unlabeled images and words", description=__doc__
    )
    sub = parser.add_subparsers(dest="lanit_command", metavar="SUBCOMMAND")

    train = sub.add_parser("train", help="train on a folder of unlabeled images and a list of domain words")
    train.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    train.add_argument(
        "--domains", required=True, help='comma-separated domain words, e.g. "blond hair,smiling"'
    )
    train.add_argument(
        "--template",
        default=None,
        help="template preset (photo, face, animal, food, scene, "
        'shapes) or templates with "{}" separated by "|"',
    )
    train.add_argument("--out", required=True, help="run folder (checkpoint, samples, losses)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    train.add_argument(
        "--preset", default="default", help="default (paper sizes, 256 px) or shapes (64 px, small)"
    )
    train.add_argument("--clip", default=None, help="CLIP hub id or local folder ('shapes-clip' = bundled)")
    train.add_argument("--img-size", type=int, default=None)
    train.add_argument("--steps", type=int, default=None, help="training steps (default 150000; shapes 800)")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--prompt-start", default=None, help="step from which prompts are learned with L_dl, or 'never'"
    )
    train.add_argument("--top-k", type=int, default=None)
    train.add_argument(
        "--lambda-cyc", type=float, default=None, help="cycle-consistency weight (StarGAN v2 and LANIT: 1)"
    )
    train.add_argument(
        "--empty",
        choices=("skip", "slack"),
        default=None,
        help="images with no domain on: skip them or use a slack domain",
    )
    train.add_argument("--checkpoint-every", type=int, default=1000)
    train.add_argument("--sample-every", type=int, default=500)
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=run_train)

    tr = sub.add_parser("translate", help="translate images with a trained run")
    tr.add_argument("--checkpoint", required=True, help="the run folder (or its checkpoint folder)")
    tr.add_argument("images", nargs="+", help="input images")
    target = tr.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="target domain words, comma-separated (latent-guided)")
    target.add_argument("--reference", help="reference image whose style is used (reference-guided)")
    tr.add_argument(
        "--ref-domains", default=None, help="domains of the reference (default: its CLIP pseudo-label)"
    )
    tr.add_argument("--samples", type=int, default=4, help="random styles per image with --to")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default="lanit_out", help="output folder")
    tr.set_defaults(func=run_translate)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_train(args: argparse.Namespace) -> int:
    from zerocon.io import load_checkpoint
    from zerocon.lanit.data import LanitDataset
    from zerocon.lanit.labels import parse_domain_words
    from zerocon.lanit.model import LanitMethod, make_config
    from zerocon.training import TrainConfig, Trainer

    domains = parse_domain_words(args.domains)
    prompt_start = args.prompt_start
    if prompt_start is not None:
        prompt_start = -1 if prompt_start == "never" else int(prompt_start)
    cfg = make_config(
        args.preset,
        domains=domains,
        templates=args.template,
        clip=args.clip,
        img_size=args.img_size,
        top_k=args.top_k,
        empty=args.empty,
        prompt_start=prompt_start,
        lambda_cyc=args.lambda_cyc,
    )
    if cfg.prompt_start == -1:
        cfg.prompt_start = None
    out = Path(args.out)
    checkpoint = out / "checkpoint"
    if args.resume:
        if not checkpoint.is_dir():
            raise ZeroconError(f"--resume: no checkpoint at {checkpoint}")
        _, saved = load_checkpoint(checkpoint)
        if saved["method"].get("domains") != cfg.domains:
            raise ZeroconError(f"--resume: the run was trained on domains {saved['method'].get('domains')}")
    elif checkpoint.exists():
        raise ZeroconError(f"{out} already holds a run; use --resume or another --out")
    steps = args.steps if args.steps is not None else (800 if args.preset == "shapes" else 150_000)
    dataset = LanitDataset.from_folder(args.data, cfg.img_size, cfg.augment)
    for message in dataset.skipped[:5]:
        print(f"skipped: {message}")
    method = LanitMethod(cfg)
    train_cfg = TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
    )
    trainer = Trainer(method, dataset, out, train_cfg, progress=not args.no_progress)
    if args.resume:
        print(f"resumed at step {trainer.resume()}")
    losses = trainer.train()
    print(f"trained {trainer.step} steps on {len(dataset)} images -> {checkpoint}")
    print("last losses: " + ", ".join(f"{k}={v:.4g}" for k, v in losses.items()))
    return 0


def _slug(words: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", words).strip("-") or "target"


def run_translate(args: argparse.Namespace) -> int:
    import torch

    from zerocon.images import labelled_grid, tensor_to_pil
    from zerocon.io import save_image_atomic
    from zerocon.lanit.labels import parse_domain_words
    from zerocon.lanit.translate import Translator

    translator = Translator.from_checkpoint(args.checkpoint)
    out = Path(args.out)
    if args.samples < 1:
        raise ZeroconError("--samples must be at least 1")
    x = translator._to_batch(args.images)
    written = []
    if args.to:
        words = parse_domain_words(args.to)
        result = translator.latent(x, words, args.samples, torch.Generator().manual_seed(args.seed))
        for path, source, outs in zip(args.images, x, result):
            images = [tensor_to_pil(source)] + [tensor_to_pil(o) for o in outs]
            target = out / f"{Path(path).stem}_to_{_slug(args.to)}.png"
            save_image_atomic(
                labelled_grid([images], ["input"] + [f"{i + 1}" for i in range(len(outs))]), target
            )
            written.append(target)
    else:
        ref_words = parse_domain_words(args.ref_domains) if args.ref_domains else None
        result = translator.reference(x, args.reference, ref_words)
        for path, source, fake in zip(args.images, x, result):
            ref_image = tensor_to_pil(translator._to_batch([args.reference])[0])
            target = out / f"{Path(path).stem}_ref_{Path(args.reference).stem}.png"
            save_image_atomic(
                labelled_grid(
                    [[tensor_to_pil(source), ref_image, tensor_to_pil(fake)]],
                    ["input", "reference", "output"],
                ),
                target,
            )
            written.append(target)
    for path in written:
        print(path)
    return 0
