"""The ``lapo`` command. Nothing imports this package; it only parses arguments and calls the API.

Each module registers one group of subcommands (``register(sub)``): ``data`` (collect, data
import/info/verify), ``expert`` (expert train/eval), ``lam`` (train-lam, probe-lam).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lapo import __version__
from lapo.cli import data, expert, lam, online, policy, run

GROUPS = (data, expert, lam, online, policy, run)


def build_parser() -> argparse.ArgumentParser:
    """The full ``lapo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lapo",
        description="LAPO: learning to act from videos without action labels "
        "(Schmidt & Jiang, ICLR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"lapo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lapo`` console script; returns the exit status.

    User errors (bad arguments, invalid or corrupt data, existing outputs) print one line
    ``lapo: error: ...`` and return 1 instead of a traceback.
    """
    from lapo.data.format import DatasetError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError, ImportError) as exc:
        print(f"lapo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lapo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
