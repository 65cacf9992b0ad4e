"""The ``zerocon`` command: a thin dispatcher over the Python API.

Each method owns its sub-commands in its own module, which exposes ``register(subparsers)``; a sub-command
parser sets ``func`` to a callable taking the parsed namespace and returning an exit status. Modules are
imported only when their command is used, so ``zerocon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from zerocon.errors import ZeroconError

# command name -> (module that registers it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "edit": (
        "zerocon.edit.cli",
        "edit photos zero-shot with a diffusion model (pix2pix-zero / pix2pix-zeroCon)",
    ),
    "invert": ("zerocon.edit.cli", "regularised DDIM inversion of photos (cached for later edits)"),
    "shapes": (
        "zerocon.shapes.cli",
        "the offline ShapesWorld: render scenes, train its models, run ShapesBench",
    ),
    "cut": ("zerocon.cut.cli", "CUT / FastCUT / SinCUT: train and translate"),
    "lanit": ("zerocon.lanit.cli", "LANIT: multi-domain translation from unlabeled images and words"),
    "eval": ("zerocon.metrics.cli", "the papers' metrics for edits and translations"),
    "ui": ("zerocon.ui.cli", "the web app"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows every default; an option whose default is ``None`` explains it in its own text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


def comma_list(text: str) -> tuple[str, ...]:
    """An argparse ``type``: ``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def option_with_old_name(parser: argparse.ArgumentParser) -> Callable[..., None]:
    """``add(new, old, **spec)``: the option ``new``, also accepted as ``old`` (a renamed flag's previous
    spelling, not listed in ``--help``)."""

    def add(new: str, old: str, **spec: Any) -> None:
        action = parser.add_argument(new, **spec)
        hidden = {k: v for k, v in spec.items() if k in ("type", "nargs", "choices", "metavar")}
        parser.add_argument(
            old, dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **hidden
        )

    return add


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerocon", description="Text-guided and contrastive image-to-image translation."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if command == name:
            module = importlib.import_module(module_name)
            module.register(subparsers, name)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from zerocon import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 0 if not argv or argv[0] in ("-h", "--help") else 2
        return int(args.func(args) or 0)
    except ZeroconError as exc:
        print(f"zerocon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zerocon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
