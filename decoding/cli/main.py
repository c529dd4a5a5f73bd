"""The ``decoding`` command line: ``decoding generate | text | image | serve | eval | demo | train``.

Each subcommand lives in its own module of this package exposing ``add_parser(subparsers)``
(which registers its options and sets ``func``). Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = ("generate", "text", "image", "serve", "eval", "demo", "train")


class UsageError(ValueError):
    """Raised by subcommands for bad options or values; printed as one line, exit status 2."""


def common_options(p: argparse.ArgumentParser) -> None:
    """Options every subcommand takes: ``--seed`` and ``--device``."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same device -> same output")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decoding",
        description="Sample text and images and run eval suites through one decoding loop.",
    )
    from decoding import __version__

    parser.add_argument("--version", action="version", version=f"decoding {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"decoding.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"decoding.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def check_device(device: str) -> None:
    """Fail early with a clear message for a device the engine cannot use (:func:`decoding.api.resolve_device`)."""
    from decoding.api import OptionError, resolve_device

    try:
        resolve_device(device)
    except OptionError as e:
        raise UsageError(f"--{e}") from None  # "--device meta: ..."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        if hasattr(args, "device"):
            check_device(args.device)
        return int(args.func(args) or 0)
    except (UsageError, ValueError, OSError, KeyError) as e:  # OSError: a file that cannot be read or written
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"decoding {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
