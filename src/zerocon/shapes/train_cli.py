"""``zerocon shapes train STAGE``: train one ShapesWorld model from the command line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from zerocon.errors import ZeroconError
from zerocon.shapes.stages import CONFIGS, STAGES, run_stage


def _parse_set(items: list[str], stage: str) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as config overrides, each value parsed as the type of the field's default
    (a tuple from comma-separated integers; a bool from 1/true/yes)."""
    cls = CONFIGS[stage]
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ZeroconError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        fld = cls.__dataclass_fields__.get(key)
        if fld is None:
            raise ZeroconError(f"stage '{stage}' has no setting '{key}'")
        default = fld.default if fld.default is not dataclasses.MISSING else None
        if isinstance(default, tuple):
            out[key] = tuple(int(v) for v in value.split(","))
        elif isinstance(default, bool):  # before int: a bool is an int
            out[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            out[key] = int(value)
        elif isinstance(default, float):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "train",
        help="train one ShapesWorld model (clip, vae, unet, vae_decoder, blip)",
        description="Train one ShapesWorld model. Order: clip and vae, then unet (needs both), vae_decoder, "
        "blip. Writes RUN/<stage>/model (save_pretrained), curve.jsonl and metrics.json.",
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--run", default="runs/shapes", help="run folder (default runs/shapes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other config fields")
    parser.set_defaults(func=_train_cmd)


def _train_cmd(args: Any) -> int:
    overrides = _parse_set(args.set, args.stage)
    overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    result = run_stage(args.stage, args.run, overrides)
    print(json.dumps(result["metrics"], indent=2))
    return 0
