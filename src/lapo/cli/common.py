"""Argument helpers shared by the ``lapo`` commands: the help formatter, value parsers and the
options every training command has."""

from __future__ import annotations

import argparse
import difflib
import math

from lapo.envs.games import DISTRIBUTION_MODES, GAMES

#: Exit status of a command stopped before its end with a resumable checkpoint, by cause:
#: ``--time-budget`` (75, EX_TEMPFAIL: "try again later"), SIGINT (130) and SIGTERM (143),
#: 128 + the signal number as a shell reports a process killed by it.
EXIT_TIME_BUDGET = 75
STOP_EXIT = {"time budget": EXIT_TIME_BUDGET, "SIGINT": 130, "SIGTERM": 143}

EXIT_STATUS_HELP = """exit status:
  0    done
  1    error (one line "lapo: error: ..." on stderr)
  2    invalid command line
  75   stopped by --time-budget with a resumable checkpoint: rerun with --resume
  130  stopped by SIGINT (Ctrl-C); training commands save a resumable checkpoint first
  143  stopped by SIGTERM; training commands save a resumable checkpoint first"""


class EnvChoices(tuple):
    """``--env`` choices: the Procgen games (listed in the help) and, by membership, any
    registered Gymnasium id (``lapo.envs.gymnasium.is_gymnasium_id``; e.g. ``Pendulum-v1``)."""

    def __contains__(self, name: object) -> bool:
        if tuple.__contains__(self, name):
            return True
        from lapo.envs.gymnasium import is_gymnasium_id

        return isinstance(name, str) and is_gymnasium_id(name)


#: ``--env`` choices of every command: a Procgen game or a Gymnasium id.
ENV_CHOICES = EnvChoices(GAMES)


def env_name(text: str) -> str:
    """argparse type of ``--env``: a Procgen game or a registered Gymnasium id, else one error
    line that lists the games and names the closest known id (a typo such as ``coinrn`` or
    ``Pendulm-v1``; argparse's own message would list only the games).

    Raises:
        argparse.ArgumentTypeError: ``text`` is neither.
    """
    if text in ENV_CHOICES:
        return text
    from lapo.envs.gymnasium import gymnasium_ids

    close = difflib.get_close_matches(text, [*GAMES, *gymnasium_ids()], n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise argparse.ArgumentTypeError(
        f"expected a Procgen game ({', '.join(GAMES)}) or a registered Gymnasium id such as "
        f"Pendulum-v1, got {text!r}{hint}"
    )


#: ``--env`` converters of the commands whose config has a Procgen ``env`` field.
PROCGEN_TYPES = {"env": env_name}

#: Choices of the Procgen fields of the configs (``lapo.config`` imports nothing from lapo).
PROCGEN_CHOICES = {"env": ENV_CHOICES, "distribution_mode": DISTRIBUTION_MODES}


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


def budget_seconds(minutes: float | None, option: str = "--time-budget") -> float | None:
    """A wall-clock budget given in minutes -> seconds (None: no budget).

    Raises:
        ValueError: ``minutes`` is not a positive, finite number (the message names ``option``).
    """
    if minutes is None:
        return None
    if not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"{option} must be a positive number of minutes, got {minutes:g}")
    return minutes * 60


def add_allow_unfinished(p: argparse.ArgumentParser, stage: str) -> None:
    """The ``--allow-unfinished`` flag of a command that consumes an earlier stage's run."""
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        help=f"use a {stage} run that stopped before its last update (--time-budget, Ctrl-C, "
        "SIGTERM); by default it is refused",
    )


def add_training_options(p: argparse.ArgumentParser, budget_help: str = "") -> None:
    """``--resume``, ``--time-budget``, ``--device`` and ``--no-progress`` of a resumable
    training command; ``budget_help`` adds to ``--time-budget``'s help."""
    from lapo.cli.options import add_device_option

    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out exactly from its checkpoint; with no checkpoint there "
        "yet it starts one, so one command serves the first start and every restart",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="stop with a checkpoint after this many minutes (rerun with --resume to continue)"
        + budget_help,
    )
    add_device_option(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
