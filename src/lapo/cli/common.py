"""Argument helpers shared by the ``lapo`` commands: the help formatter and value parsers."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, minus the noise: it appends ``(default: X)`` only where
    there is a real default (not None, False or empty) and the help text does not state one already
    (options whose default comes from the preset say so in their own words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def label_counts(text: str) -> tuple[int, ...]:
    """``--sweep`` values: comma-separated label counts, each >= 2 (``"16,32,64"``).

    Raises:
        argparse.ArgumentTypeError: anything else (argparse prints it as a usage error).
    """
    try:
        counts = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 16,32,64, got {text!r}"
        ) from None
    if any(n < 2 for n in counts):
        raise argparse.ArgumentTypeError(
            f"label counts must be >= 2 (a training and a validation label), got {text!r}"
        )
    return counts
