"""The ``lapo`` command. Nothing imports this package; it only parses arguments and calls the API.

Each module registers one group of subcommands (``register(sub)``): ``data`` (collect, data
import/info/verify), ``expert`` (expert train/eval), ``lam`` (train-lam, probe-lam), ``aggregate``
(a report over several runs), ``ilpo`` (the ILPO baseline).
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from lapo import __version__
from lapo.cli import aggregate, data, expert, ilpo, lam, online, policy, run
from lapo.cli.common import EXIT_STATUS_HELP, STOP_EXIT

GROUPS = (data, expert, lam, online, policy, run, aggregate, ilpo)


def build_parser() -> argparse.ArgumentParser:
    """The full ``lapo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lapo",
        description="LAPO: learning to act from videos without action labels "
        "(Schmidt & Jiang, ICLR 2024).",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lapo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop: unwinds like Ctrl-C (partial outputs are discarded,
    locks released) and exits 143. Training loops catch SIGTERM themselves (``GracefulStop``)."""

    reason = "SIGTERM"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """lapo's own warnings as one ``lapo: warning: ...`` line, without the source line that
    Python's format prints (which reads like part of a traceback); others as Python shows them."""
    if Path(filename).resolve().is_relative_to(_PACKAGE):
        return f"lapo: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


_PYTHON_FORMAT = warnings.formatwarning
_PACKAGE = Path(__file__).resolve().parents[1]  # the lapo package


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lapo`` console script; returns the exit status.

    User errors (bad arguments, invalid or corrupt data, existing outputs, an output in use by
    another lapo process) print one line ``lapo: error: ...`` and return 1 instead of a
    traceback. A command stopped before its end returns 75 (``--time-budget``; resumable), 130
    (SIGINT) or 143 (SIGTERM), the same for every command (``EXIT_STATUS_HELP``).
    """
    args = build_parser().parse_args(argv)  # before the imports below: --help needs no torch
    from lapo.data.format import DatasetError
    from lapo.safety import InUseError

    previous = signal.signal(signal.SIGTERM, _terminate)
    warnings.formatwarning = _format_warning  # for this command; restored below
    try:
        if getattr(args, "device", None) is not None:  # before any work, not at its first use
            from lapo.device import check_available

            check_available(args.device)
        stop_reason = args.func(args)
    except (
        DatasetError, ValueError, FileExistsError, FileNotFoundError, ImportError, InUseError,
        FloatingPointError,  # a non-finite loss or weights: the message says what is kept
    ) as exc:  # fmt: skip
        print(f"lapo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM (Terminated), a stage stopped by either
        reason = getattr(exc, "reason", "SIGINT")
        print(f"lapo: {str(exc) or f'interrupted ({reason})'}", file=sys.stderr)
        return STOP_EXIT.get(reason, STOP_EXIT["SIGINT"])
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.formatwarning = _PYTHON_FORMAT
    if stop_reason in STOP_EXIT:
        print(
            f"lapo: stopped ({stop_reason}) with a checkpoint; rerun with --resume to continue",
            file=sys.stderr,
        )
        return STOP_EXIT[stop_reason]
    return 0


if __name__ == "__main__":
    sys.exit(main())
