"""The lapo command: help texts, exit codes and one-line errors."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lapo.cli import build_parser, main
from lapo.data import DatasetWriter


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
    assert "environment steps to train for (default: preset) --preset" in text


def test_help_runs_as_console_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lapo", "collect", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--frames" in out and "--policy" in out and "--num-envs" in out


def _small_dataset(path: Path) -> None:
    rng = np.random.default_rng(0)
    with DatasetWriter(
        path,
        frame_shape=(8, 8, 3),
        fields=("actions",),
        action_space={"type": "discrete", "n": 15},
        source={"kind": "test"},
    ) as w:
        for length in (5, 7):
            w.add_episode(
                rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
                actions=rng.integers(0, 15, length),
            )


def test_data_info_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _small_dataset(tmp_path / "ds")
    assert main(["data", "info", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "12 x (8, 8, 3) uint8" in out and "2 (length min 5" in out
    assert main(["data", "verify", "--no-progress", str(tmp_path / "ds")]) == 0
    assert "all sha256 match" in capsys.readouterr().out


def test_verify_reports_altered_shard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _small_dataset(tmp_path / "ds")
    shard = tmp_path / "ds" / "frames" / "shard-00000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["data", "verify", "--no-progress", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lapo: error:") and "shard-00000.npy" in err and "sha256" in err


def test_info_on_missing_dataset_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["data", "info", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such dataset directory" in err


def test_collect_bad_game_is_refused_by_parser(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--env", "mario", "--frames", "10", "--out", "x"])
    assert exc.value.code == 2
    assert "invalid choice: 'mario'" in capsys.readouterr().err


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


@pytest.mark.parametrize(
    ("preset", "flags"),
    [("cpu", []), ("paper", []), ("cpu", ["--no-restart-dead-codes", "--no-fdm-residual"]),
     ("paper", ["--restart-dead-codes", "--idm-frame-differences"])],
)  # fmt: skip
def test_train_lam_options_override_the_preset(preset, flags) -> None:
    from lapo.cli.lam import lam_config_from_args
    from lapo.config import LAM_PRESETS, LAMConfig

    args = build_parser().parse_args(["train-lam", "--data", "d", "--preset", preset, *flags])
    config = lam_config_from_args(args)
    expected = LAMConfig(**LAM_PRESETS[preset])
    for flag in flags:
        name = flag.removeprefix("--").removeprefix("no-").replace("-", "_")
        expected = dataclasses.replace(expected, **{name: not flag.startswith("--no-")})
    assert config == expected


def test_train_lam_bottleneck_options_set_the_vq_layout() -> None:
    from lapo.cli.lam import lam_config_from_args

    options = ["--preset", "paper", "--num-latents", "2", "--code-dim", "8"]
    argv = ["train-lam", "--data", "d", *options]
    config = lam_config_from_args(build_parser().parse_args(argv))
    assert (config.num_codebooks, config.num_latents, config.code_dim) == (2, 2, 8)
    assert config.latent_dim == 32


def test_train_lam_idm_multiplier_widens_only_the_idm() -> None:
    from lapo.cli.lam import lam_config_from_args
    from lapo.config import LAMConfig
    from lapo.models.lam import LatentActionModel

    argv = ["train-lam", "--data", "d", "--preset", "cpu", "--idm-multiplier", "2"]
    config = lam_config_from_args(build_parser().parse_args(argv))
    assert config.idm_multiplier == 2
    wide = LatentActionModel(config)
    plain = LatentActionModel(dataclasses.replace(config, idm_multiplier=0))
    # IMPALA's last stack has 32 x multiplier channels on an 8 x 8 grid, flattened into fc
    assert wide.idm.encoder.fc[0].in_features == 2 * plain.idm.encoder.fc[0].in_features == 4096
    assert sum(p.numel() for p in wide.fdm.parameters()) == sum(
        p.numel() for p in plain.fdm.parameters()
    )
    with pytest.raises(ValueError, match="idm_multiplier must be >= 1"):
        LAMConfig(idm_multiplier=-1)
