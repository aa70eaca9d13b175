"""The ``dpnb`` command. Each subcommand lives in ``dpnb/commands/<name>.py`` and exposes
``register(subparsers)`` (adds its parser, sets ``func``); ``func(args)`` returns the exit code.

Exit codes: 0 ok, 1 a notebook or check failed, 2 invalid parameters or input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import DpnbError, ParameterError

COMMANDS = ("run", "simulate", "gt", "diff", "review", "replay", "lumi")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="dpnb", description="Reproducible data-production reports for run buckets.")
    parser.add_argument("--version", action="version", version=f"dpnb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"commands.{name}"):
                continue  # not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ParameterError as exc:
        print(f"dpnb {args.command}: {exc}", file=sys.stderr)
        return 2
    except DpnbError as exc:
        print(f"dpnb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
