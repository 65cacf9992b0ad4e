"""``zerocon cut train`` and ``zerocon cut translate``: thin wrappers over the Python API.

Options map onto :class:`~zerocon.cut.config.CUTConfig` and :class:`~zerocon.training.TrainConfig`; a value
left out keeps the preset's default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zerocon.cut.config import GENERATOR_NORMS
from zerocon.errors import ZeroconError

DEFAULT_STEPS = 1000


def register(subparsers: Any, name: str = "cut") -> None:
    parser = subparsers.add_parser(name, help="CUT / FastCUT / SinCUT: train and translate")
    commands = parser.add_subparsers(dest="cut_command", metavar="{train,translate}")
    parser.set_defaults(func=lambda args: _help(parser))

    train = commands.add_parser(
        "train",
        help="train a translator from two unpaired image folders",
        description="Train CUT / FastCUT / SinCUT on two image folders (or DATA/trainA + DATA/trainB). "
        "Runs on one CPU or GPU, or on several processes with `accelerate launch`.",
    )
    train.add_argument(
        "data", nargs="?", help="folder holding trainA/ and trainB/ (instead of --domain-a/-b)"
    )
    train.add_argument("--domain-a", help="folder of source-domain images")
    train.add_argument("--domain-b", help="folder of target-domain images")
    train.add_argument("--out", required=True, help="run folder: checkpoint/, samples/, losses.png")
    train.add_argument("--preset", default=None, choices=["cut", "fastcut", "sincut"], help="default: cut")
    train.add_argument(
        "--size",
        type=int,
        help="training crop side (cut/fastcut: 256, a multiple of 4; sincut: 64, a power of two)",
    )
    train.add_argument("--load-size", type=int, help="resize side before cropping (default size*286/256)")
    train.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})"
    )
    train.add_argument("--batch-size", type=int, help="images per process and step (cut: 1, sincut: 16)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--lr", type=float, help="Adam learning rate (cut/fastcut 2e-4, sincut 2e-3)")
    train.add_argument("--lambda-nce", type=float, help="PatchNCE weight (cut 1, fastcut 10, sincut 4)")
    train.add_argument("--num-patches", type=int, help="PatchNCE locations per layer (default 256)")
    train.add_argument("--ngf", type=int, help="generator width (cut/fastcut 64, sincut 10)")
    train.add_argument("--ndf", type=int, help="discriminator width (cut/fastcut 64, sincut 8)")
    train.add_argument("--n-blocks", type=int, help="generator residual blocks (cut/fastcut 9, sincut 6)")
    train.add_argument(
        "--norm-g",
        choices=GENERATOR_NORMS,
        help="generator normalisation of cut/fastcut (default instance; none passes flat colours through)",
    )
    train.add_argument("--sample-every", type=int, default=500, help="sample grid + loss plot every K steps")
    train.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint every K steps")
    train.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    train.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard")
    train.add_argument("--resume", action="store_true", help="continue RUN from its checkpoint, exactly")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    tr = commands.add_parser(
        "translate",
        help="translate images with a trained generator",
        description="Translate images or folders of images of any size; no target-domain folder is needed.",
    )
    tr.add_argument("inputs", nargs="+", metavar="IMAGE|DIR")
    tr.add_argument("--checkpoint", required=True, help="run folder (or its checkpoint/ folder)")
    tr.add_argument("--out", required=True, help="output folder (PNG files named after the inputs)")
    tr.add_argument(
        "--preset", choices=["cut", "fastcut", "sincut"], help="refuse a checkpoint of another preset"
    )
    tr.add_argument("--batch-size", type=int, default=4)
    tr.add_argument("--max-side", type=int, help="shrink larger images to this longer side first")
    tr.add_argument("--device", default="cpu")
    tr.set_defaults(func=run_translate)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _saved_run(out: Path) -> dict[str, Any] | None:
    config = out / "checkpoint" / "config.json"
    return json.loads(config.read_text()) if config.is_file() else None


def run_train(args: argparse.Namespace) -> int:
    from zerocon.cut.config import CUTConfig, preset
    from zerocon.cut.data import SingleImageDataset, UnpairedDataset, resolve_domains
    from zerocon.cut.model import CUTModel
    from zerocon.training import TrainConfig, Trainer

    out = Path(args.out)
    saved = _saved_run(out) if args.resume else None
    if args.resume and saved is None:
        raise ZeroconError(f"--resume: {out} has no checkpoint to continue from")
    if saved is not None:
        method = saved.get("method", {})
        if method.get("method") != "cut":
            raise ZeroconError(f"--resume: {out} holds a '{method.get('method')}' run, not a CUT run")
        if args.preset is not None and args.preset != method.get("preset"):
            raise ZeroconError(f"--resume: {out} is a '{method.get('preset')}' run, not '{args.preset}'")
        cfg = CUTConfig.from_dict(method)
        train_saved = saved.get("train", {})
        seed = int(train_saved.get("seed", args.seed))
        batch_size = int(train_saved.get("batch_size", 1))
    else:
        cfg = preset(
            args.preset or "cut",
            size=args.size,
            load_size=args.load_size,
            lr=args.lr,
            lambda_nce=args.lambda_nce,
            num_patches=args.num_patches,
            ngf=args.ngf,
            ndf=args.ndf,
            n_blocks=args.n_blocks,
            norm_g=args.norm_g,
        )
        seed = args.seed
        batch_size = args.batch_size or (16 if cfg.preset == "sincut" else 1)
    if args.steps < 1:
        raise ZeroconError("--steps must be at least 1")
    domain_a, domain_b = resolve_domains(args.domain_a, args.domain_b, args.data)
    if cfg.preset == "sincut":
        dataset = SingleImageDataset(
            domain_a, domain_b, cfg.size, cfg.resolved_load_size, cfg.zoom_range, cfg.flip
        )
    else:
        dataset = UnpairedDataset(
            domain_a,
            domain_b,
            cfg.size,
            cfg.resolved_load_size,
            cfg.flip,
            plain_from_step=cfg.plain_from_step(args.steps),
        )
    train_cfg = TrainConfig(
        steps=args.steps,
        batch_size=batch_size,
        seed=seed,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        mixed_precision=args.mixed_precision,
        tensorboard=args.tensorboard,
    )
    method = CUTModel(cfg, total_steps=args.steps, seed=seed)
    trainer = Trainer(method, dataset, out, train_cfg, progress=not args.no_progress)
    if saved is not None:
        trainer.resume()
    losses = trainer.train()
    if trainer.accelerator.is_main_process:
        summary = ", ".join(f"{k} {v:.3g}" for k, v in losses.items())
        print(f"trained {cfg.preset} to step {trainer.step} in {out} ({summary})")
    return 0


def run_translate(args: argparse.Namespace) -> int:
    from zerocon.cut.translate import CUTTranslator, translate_paths

    translator = CUTTranslator.from_checkpoint(args.checkpoint, preset=args.preset, device=args.device)
    report = translate_paths(translator, args.inputs, args.out, args.batch_size, args.max_side)
    print(f"translated {len(report.written)} image(s) into {args.out}")
    if report.failed:
        print(f"could not translate {len(report.failed)} file(s):", file=sys.stderr)
        for message in report.failed:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0


__all__ = ["register", "run_train", "run_translate"]
