"""``zerocon ui``: serve the web app on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zerocon.devices import DTYPES
from zerocon.ui.jobs import UIConfig


def register(subparsers: Any, name: str) -> None:
    defaults = UIConfig()
    parser = subparsers.add_parser(
        name,
        help="the web app",
        description="Serve the web app: an Edit tab (zero-shot editing) and a Translate tab (CUT / LANIT runs).",
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port (default: %(default)s)")
    parser.add_argument(
        "--model",
        default=defaults.model,
        help="diffusion model: 'shapes' (the bundled toy), a local folder or a cached hub id (default: %(default)s)",
    )
    parser.add_argument(
        "--captioner",
        default=defaults.captioner,
        help="BLIP id or folder, or 'none'; auto: the model's own, else Salesforce/blip-image-captioning-base "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--device", default=defaults.device, help="auto: CUDA, then MPS, then CPU (default: %(default)s)"
    )
    parser.add_argument(
        "--dtype",
        default=defaults.dtype,
        choices=DTYPES,
        help="auto: float16 on CUDA, float32 elsewhere (default: %(default)s)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=defaults.workdir,
        help="the app's own folder for outputs (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=defaults.cache_dir,
        help="inversion cache folder, shared with 'zerocon edit' (default: %(default)s)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the inversion cache")
    parser.add_argument(
        "--runs",
        type=Path,
        default=defaults.runs,
        help="folder of CUT / LANIT runs offered in the Translate tab (default: %(default)s)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_mb,
        help="largest upload (default: %(default)s)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=defaults.max_pixels,
        help="largest image in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=defaults.max_steps,
        help="most diffusion steps (default: %(default)s)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from zerocon.ui.app import launch

    config = UIConfig(
        model=args.model,
        captioner=args.captioner,
        device=args.device,
        dtype=args.dtype,
        host=args.host,
        port=args.port,
        workdir=args.workdir,
        cache_dir=None if args.no_cache else args.cache_dir,
        runs=args.runs,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_steps=args.max_steps,
    )
    cache = "no inversion cache" if config.cache_dir is None else f"inversion cache in {config.cache_dir}"
    print(
        f"zerocon ui: serving on http://{config.host}:{config.port} (outputs in {config.workdir.resolve()}; "
        f"{cache})"
    )
    launch(config, block=True)
    return 0
