"""The lapo command as a whole (``lapo.cli``): help texts, exit codes, one-line errors, and
the options generated from the typed configs on every command."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lapo.cli import build_parser, main


def _subcommand_parsers(parser, prefix=()):
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommand_parsers(sub, (*prefix, name))


def test_every_option_of_every_subcommand_has_help() -> None:
    found = dict(_subcommand_parsers(build_parser()))
    assert {
        ("collect",),
        ("data",),
        ("data", "import"),
        ("data", "info"),
        ("data", "verify"),
    } <= set(found)
    for name, parser in found.items():
        for action in parser._actions:
            if action.dest in ("help",) or action.option_strings == []:
                continue
            assert action.help, f"lapo {' '.join(name)} {action.option_strings} has no help"
        text = " ".join(parser.format_help().split())
        # real defaults are shown once; no "(default: None)" noise, no doubled defaults
        assert "(default: None)" not in text and "(default: [])" not in text, name
        assert not re.search(r"default[^()]*\) \(default:", text), name


def test_help_shows_real_defaults() -> None:
    found = dict(_subcommand_parsers(build_parser()))
    text = " ".join(found[("expert", "train")].format_help().split())
    assert "(default: cpu)" in text  # --preset
    # generated from PPOConfig: the docstring's words, each preset's value, the old --steps
    assert (
        "--total-steps TOTAL_STEPS, --steps TOTAL_STEPS environment steps to train for "
        "(default: the preset's: paper 50000000, cpu 10000000, smoke 192)" in text
    )


def test_help_runs_as_console_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lapo", "collect", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--frames" in out and "--policy" in out and "--num-envs" in out


@pytest.mark.parametrize("command", [["run"], ["decode-offline", "--policy", "p", "--lam", "l",
                                              "--data", "d"]])  # fmt: skip
@pytest.mark.parametrize(
    ("value", "message"), [("16,x", "comma-separated integers"), ("16,1", ">= 2")]
)
def test_bad_sweep_is_a_usage_error_before_any_work(command, value, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--sweep", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--sweep" in err and message in err
