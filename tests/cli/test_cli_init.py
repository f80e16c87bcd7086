"""The lapo command as a whole (``lapo.cli``): help texts, exit codes, one-line errors, and
the options generated from the typed configs on every command."""

from __future__ import annotations

import dataclasses
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


def _generated():
    """Per command: its config class and the fields it leaves out on purpose."""
    from lapo.cli import expert, lam, online, policy, run
    from lapo.config import (
        BCConfig,
        CollectConfig,
        DecodeConfig,
        FinetuneConfig,
        LAMConfig,
        PPOConfig,
    )
    from lapo.pipeline.run_config import RunConfig

    return {
        ("collect",): (CollectConfig, ()),
        ("train-lam",): (LAMConfig, lam.LAM_EXCLUDE),
        ("train-bc",): (BCConfig, policy.BC_EXCLUDE),
        ("decode-offline",): (DecodeConfig, policy.DECODE_EXCLUDE),
        ("expert", "train"): (PPOConfig, expert.PPO_EXCLUDE),
        ("finetune",): (FinetuneConfig, online.FINETUNE_EXCLUDE),
        ("ppo",): (FinetuneConfig, online.PPO_SCRATCH_EXCLUDE),
        ("run",): (RunConfig, run.RUN_EXCLUDE),
    }


#: The fields a command leaves out, and why (a new exclusion must be added here, on purpose).
EXCLUDED = {
    ("finetune",): {"latent_policy", "lam", "encoder", "multiplier", "features"},  # inputs
    ("ppo",): {"latent_policy", "hybrid", "lam", "hybrid_steps", "hybrid_every", "hybrid_epochs",
               "hybrid_batch_size", "hybrid_learning_rate", "hybrid_label_smoothing"},
    ("run",): {"overrides"},  # --set
}  # fmt: skip


def test_every_config_field_has_a_flag_with_docstring_help() -> None:
    from lapo.cli.options import field_docs, flag

    found = dict(_subcommand_parsers(build_parser()))
    commands = _generated()
    for command, (config_cls, exclude) in commands.items():
        assert set(exclude) == EXCLUDED.get(command, set()), command
        actions = {a.dest: a for a in found[command]._actions if a.option_strings}
        docs = field_docs(config_cls)
        for field in dataclasses.fields(config_cls):
            if field.name in exclude:
                continue
            action = actions.get(field.name)
            assert action is not None and flag(field.name) in action.option_strings, (
                f"lapo {' '.join(command)} has no {flag(field.name)} for "
                f"{config_cls.__name__}.{field.name}"
            )
            assert docs[field.name], f"{config_cls.__name__}.{field.name} has no docstring entry"
            assert action.default is None  # None: the preset's value, resolved by the config


def test_help_comes_from_the_config_docstrings() -> None:
    found = dict(_subcommand_parsers(build_parser()))

    def help_of(command, option):
        return next(a.help for a in found[command]._actions if option in a.option_strings)

    assert help_of(("train-lam",), "--restart-dead-codes").startswith(
        "re-seed unused codes from the batch (off in the paper) (default: the preset's: "
        "paper False, cpu True, smoke False)"
    )
    assert help_of(("decode-offline",), "--max-epochs").startswith("decoder training (epochs")
    assert help_of(("expert", "train"), "--num-steps") == (
        "rollout length per env and update (default: the preset's: paper 256, cpu 256, smoke 16)"
    )
    assert help_of(("finetune",), "--hybrid-steps").startswith(
        "environment steps during which the decoder is retrained (release 400k)"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [(["expert", "train", "--env", "maze", "--steps", "7"], "total_steps"),
     (["ppo", "--env", "maze", "--steps", "7"], "total_steps"),
     (["finetune", "--env", "maze", "--policy", "p", "--steps", "7"], "total_steps")],
)  # fmt: skip
def test_old_flag_spellings_still_work(old, new) -> None:
    assert getattr(build_parser().parse_args(old), new) == 7
    args = build_parser().parse_args([*old[:-2], "--no-bf16", "--seed", "3"])
    assert (args.bf16, args.seed) == (False, 3)


#: Every command that computes, with its required arguments.
COMPUTING = {
    "collect": ["collect", "--env", "maze", "--frames", "8", "--out", "o"],
    "train-lam": ["train-lam", "--data", "d"],
    "probe-lam": ["probe-lam", "l", "--data", "d"],
    "train-bc": ["train-bc", "--lam", "l", "--data", "d"],
    "decode-offline": ["decode-offline", "--policy", "p", "--lam", "l", "--data", "d"],
    "evaluate": ["evaluate", "p"],
    "finetune": ["finetune", "--env", "maze", "--policy", "p"],
    "ppo": ["ppo", "--env", "maze"],
    "expert train": ["expert", "train", "--env", "maze"],
    "expert eval": ["expert", "eval", "c"],
    "expert export": ["expert", "export", "c", "--out", "o"],
    "run": ["run"],
    "data export": ["data", "export", "d", "--lam", "l", "--format", "lerobot", "--out", "o"],
}


@pytest.mark.parametrize("command", sorted(COMPUTING))
def test_every_computing_command_takes_device(command, capsys) -> None:
    argv = COMPUTING[command]
    assert build_parser().parse_args([*argv, "--device", "cpu"]).device == "cpu"
    assert build_parser().parse_args([*argv, "--device", "cuda:1"]).device == "cuda:1"
    assert build_parser().parse_args(argv).device is None  # lapo.device.default_device()
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--device", "gpu"])
    assert exc.value.code == 2 and "expected cpu, cuda, cuda:N or mps" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMPUTING))
def test_a_missing_gpu_is_one_error_line_before_any_work(command, tmp_path, monkeypatch,
                                                         capsys) -> None:  # fmt: skip
    import torch

    monkeypatch.chdir(tmp_path)  # relative outputs (o, runs/...) land here, if anywhere
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*COMPUTING[command], "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lapo: error: device cuda: this PyTorch sees no CUDA GPU")
    assert "\n" not in err  # one line: no progress bar, no traceback
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["expert", "eval", "c", "--episodes", "0"], "--episodes: expected at least 1, got 0"),
        (["expert", "export", "c", "--out", "o", "--episodes", "-3"], "expected at least 0"),
        (["decode-offline", "--policy", "p", "--lam", "l", "--data", "d", "--sweep", "16,32",
          "--episodes", "x"], "expected an integer, got 'x'"),
        (["evaluate", "p", "--json", "."], "is a directory; expected a file path"),
        (["expert", "eval", "c", "--json", "."], "is a directory"),
        (["probe-lam", "l", "--data", "d", "--out", "."], "is a directory"),
    ],
)  # fmt: skip
def test_bad_counts_and_json_paths_are_usage_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_help_imports_no_torch() -> None:
    code = (
        "import sys, lapo.cli\n"
        "try:\n    lapo.cli.main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'lapo --help imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_lapo_warnings_print_as_one_line_and_others_as_python_shows_them() -> None:
    import warnings

    import lapo.device
    from lapo import cli

    ours = cli._format_warning("bf16 dropped", UserWarning, lapo.device.__file__, 155)
    assert ours == "lapo: warning: bf16 dropped\n"
    theirs = cli._format_warning("deprecated", FutureWarning, "/elsewhere/x.py", 3)
    assert theirs.startswith("/elsewhere/x.py:3: FutureWarning: deprecated")
    before = warnings.formatwarning
    assert main(["expert", "list"]) == 0
    assert warnings.formatwarning is before  # restored after the command
