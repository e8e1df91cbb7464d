"""The ``dnnstress`` command line.

Each subcommand lives in its own module under :mod:`dnnstress.commands` and exposes
``add_parser(subparsers)``; the parser it returns carries ``func=run(args) -> int``.
The options they share (``--out``, ``--seed``, ``--threads``, ``--quiet``, ``--json``)
are spelled once, in :mod:`dnnstress.commands._common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from dnnstress import __version__
from dnnstress.commands._common import thread_limits

_COMMANDS = ("demo", "extract", "models", "data", "sweep", "campaign", "report", "bench",
             "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnnstress",
        description="Stress-test deep feature vectors: drop dimensions, quantize values, "
                    "and measure what a linear SVM loses.")
    parser.add_argument("--version", action="version", version=f"dnnstress {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"dnnstress.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with thread_limits(getattr(args, "threads", None)), warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted: results written so far are kept", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        # Expected failures (bad input, missing data, a full disk, a file where a folder
        # should be) get one clear line, not a traceback.
        print(f"dnnstress {args.command}: error: {error}", file=sys.stderr)
        return 1


def _one_line_warning(command: str):
    """Warnings (a configuration left out, an ignored label column) as one line each,
    like errors, not with the source location Python shows by default."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"dnnstress {command}: warning: {message}", file=sys.stderr)
    return show


if __name__ == "__main__":
    sys.exit(main())
