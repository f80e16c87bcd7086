"""``lapo run`` (``lapo.cli.run``): options from ``RunConfig``, presets resolved by the same code
as the API, ``--set STAGE.FIELD=VALUE`` stacked on the preset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lapo.cli import build_parser, main
from lapo.cli.run import run_config_from_args
from lapo.config import BC_PRESETS, LAM_PRESETS, BCConfig, LAMConfig
from lapo.pipeline.run_config import RunConfig, stage_configs


def _config(*argv: str) -> RunConfig:
    return run_config_from_args(build_parser().parse_args(["run", "--env", "maze", *argv]))


def test_set_stacks_on_the_preset_of_each_stage() -> None:
    config = _config("--preset", "cpu", "--set", "lam.steps=500", "--set", "bc.batch_size=32")
    stages = stage_configs(config)
    assert stages["lam"] == LAMConfig(**{**LAM_PRESETS["cpu"], "steps": 500})
    assert stages["bc"] == BCConfig(**{**BC_PRESETS["cpu"], "batch_size": 32})
    assert stages["decode"].labels == 256 and config.frames == 200_000  # the cpu preset's rest
    # the API builds the same run from the same preset and overrides
    api = RunConfig(
        env="maze", preset="cpu", overrides={"lam": {"steps": 500}, "bc": {"batch_size": 32}}
    )
    assert config == api


def test_set_values_are_typed_and_win_over_run_options() -> None:
    config = _config(
        "--preset", "smoke", "--lam-steps", "9", "--labels", "64",
        "--set", "lam.steps=7", "--set", "lam.fdm_residual=true", "--set", "decode.hidden=32,16",
        "--set", "lam.steps=8",  # the last of two wins
    )  # fmt: skip
    stages = stage_configs(config)
    assert (stages["lam"].steps, stages["lam"].fdm_residual) == (8, True)
    assert stages["decode"].hidden == (32, 16) and stages["decode"].labels == 64
    assert stages["decode"].max_epochs == 20  # the smoke preset's short decoder stays


def test_run_options_are_generated_from_runconfig_and_resolved_by_it() -> None:
    config = _config("--preset", "smoke", "--no-sweep-baseline", "--sweep", "4,8", "--hide-noop")
    assert (config.sweep, config.sweep_baseline, config.hide_noop) == ((4, 8), False, True)
    assert config == RunConfig(env="maze", preset="smoke", sweep=(4, 8), sweep_baseline=False,
                               hide_noop=True)  # fmt: skip
    assert _config("--preset", "paper").online is True  # RUN_PRESETS, through RunConfig
    assert _config("--preset", "cpu", "--device", "cpu").device == "cpu"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [("lam.steps", "expects STAGE.FIELD=VALUE"),
     ("ppo.steps=3", "unknown stage 'ppo'; valid stages: lam, bc, decode"),
     ("bc.step=3", "BCConfig has no field 'step'; valid fields: encoder, multiplier,"),
     ("lam.steps=many", "expected an integer, got 'many'"),
     ("lam.quantizer=pq", "expected one of vq, none, fsq"),
     ("lam.steps=0", "LAMConfig (lam): steps must be >= 1")],
)  # fmt: skip
def test_bad_set_is_one_error_line_before_any_work(
    assignment, message, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--env", "maze", "--preset", "smoke", "--out", str(out), "--set", assignment]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lapo: error:") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_api_overrides_are_checked_like_the_cli() -> None:
    with pytest.raises(ValueError, match="unknown stage 'expert'; valid stages: lam, bc, decode"):
        RunConfig(preset="smoke", overrides={"expert": {"steps": 1}})
    with pytest.raises(ValueError, match="DecodeConfig \\(decode\\) has no field 'epochs'"):
        RunConfig(preset="smoke", overrides={"decode": {"epochs": 1}})
    config = RunConfig(preset="smoke", overrides={"bc": {"steps": 3}})
    assert dataclasses.replace(config, labels=16).overrides == {"bc": {"steps": 3}}


@pytest.mark.parametrize(
    ("expert", "message"),
    [("missing", "expert {p}: no such run directory or checkpoint"),
     ("empty", "expert {p} holds no checkpoint (no checkpoint.json; it is empty)"),
     ("run", "expert {p} holds no checkpoint (no checkpoint.json; it holds notes.txt)")],
)  # fmt: skip
def test_a_bad_expert_is_one_error_line_and_leaves_no_run_directory(
    expert, message, tmp_path: Path, capsys
) -> None:
    path = tmp_path / expert
    if expert == "empty":
        path.mkdir()
    elif expert == "run":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    argv = ["run", "--env", "maze", "--preset", "smoke", "--expert", str(path), "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lapo: error:") and err.count("\n") == 1, err
    assert message.format(p=path) in err, err
    assert not out.exists()  # the run lock's folder is removed again


@pytest.mark.parametrize(
    ("command", "env", "hint"),
    [(["run"], "coinrn", "; did you mean coinrun?"),
     (["expert", "train"], "Pendulm-v1", "; did you mean Pendulum-v1?"),
     (["collect", "--out", "ds"], "nosuch", "")],
)  # fmt: skip
def test_an_unknown_env_is_named_with_the_closest_known_one(command, env, hint, capsys) -> None:
    if env.endswith("-v1"):
        pytest.importorskip("gymnasium")  # the hint names a registered Gymnasium id
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--env", env])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "expected a Procgen game (bigfish, bossfight," in err
    assert err.endswith(f"got {env!r}{hint}"), err


def test_game_playing_parts_asked_for_on_given_data_are_refused_by_api_and_cli(
    tmp_path: Path, capsys
) -> None:
    for asked in ({"online": True}, {"sweep": (16, 64)}):
        with pytest.raises(ValueError, match="sweep and online play the game"):
            RunConfig(data=tmp_path / "ds", preset="smoke", **asked)
    quiet = RunConfig(data=tmp_path / "ds", preset="paper")  # the preset's online is dropped
    assert quiet.online is False and quiet.sweep == ()
    argv = ["run", "--data", str(tmp_path / "ds"), "--online", "--out", str(tmp_path / "r")]
    assert main(argv) == 1
    assert "sweep and online play the game" in capsys.readouterr().err
    argv = ["run", "--data", str(tmp_path / "ds"), "--env", "maze", "--expert", "x", "--frames",
            "1000", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--env, --expert, --frames: a run on given data (--data) records and plays no" in err
    assert not (tmp_path / "r").exists()


def test_the_console_summary_names_stage_3s_held_out_figures() -> None:
    from lapo.cli.run import summary_table

    discrete = {"decode": {"test/decoder_accuracy": 0.41, "test/decoded_policy_accuracy": 0.3,
                           "test/label_bc_accuracy": 0.25}}  # fmt: skip
    assert summary_table(discrete) == (
        "decoded action accuracy (held-out): decoder on IDM latents 0.410, decoded policy "
        "0.300, label-only BC 0.250"
    )
    continuous = {"decode": {"test/decoder_r2": 0.8, "test/decoded_policy_r2": 0.5}}
    assert summary_table(continuous) == (
        "decoded action R^2 (held-out): decoder on IDM latents 0.800, decoded policy 0.500"
    )
    assert summary_table({"decode": {}}) == ""  # stage 3 skipped: nothing to say
    probes = {"lam": {"probe_mlp_r2": 0.25, "frame_difference_mlp_r2": -0.5}}
    assert summary_table(probes) == (
        "latent probe R^2 (MLP, held-out): 0.250 (frame-difference baseline -0.500)"
    )
    from lapo.eval.latent_quality import summary_line

    line = summary_line({"num_samples": 9, "probe_mlp_r2": 0.25, "probe_linear_r2": 0.5})
    assert line == "9 windows: MLP probe R^2 0.250, linear probe R^2 0.500"


def test_an_expert_of_another_game_is_refused_and_names_the_default_game(
    tmp_path: Path, capsys
) -> None:
    from lapo.experts import shipped_expert

    ninja = shipped_expert("ninja")
    parsed = build_parser().parse_args(["run", "--expert", str(ninja), "--preset", "smoke"])
    assert run_config_from_args(parsed).env == "ninja"  # the expert's game, not coinrun
    out = tmp_path / "out"
    argv = ["run", "--env", "coinrun", "--expert", str(ninja), "--preset", "smoke", "--out",
            str(out)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"the expert {ninja} plays ninja, this run is on coinrun: pass --env ninja" in err
    assert not out.exists()


def test_a_run_inside_another_run_or_a_stage_folder_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    (run / "lam").mkdir(parents=True)
    (run / "pipeline.json").write_text('{"format": "lapo-pipeline", "stages": {}}')
    for stage in (run / "lam", tmp_path / "single"):  # as a training command leaves them
        stage.mkdir(exist_ok=True)
        (stage / "checkpoint.json").write_text("{}")
        (stage / ".lapo.lock").touch()
    for out, message in ((run / "lam", "lies inside the lapo run"),
                         (run / "lam" / "deeper", "lies inside the lapo run"),
                         (tmp_path / "single", "holds a training run of one stage")):  # fmt: skip
        assert main(["run", "--env", "coinrun", "--preset", "smoke", "--out", str(out)]) == 1
        assert message in capsys.readouterr().err
    assert not (run / "lam" / "deeper").exists()
    assert sorted(p.name for p in (run / "lam").iterdir()) == [".lapo.lock", "checkpoint.json"]


def test_options_of_stages_a_run_does_not_have_are_refused(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "out")
    base = ["run", "--env", "coinrun", "--preset", "smoke", "--out", out]
    assert main([*base, "--expert-steps", "1000"]) == 1  # coinrun's shipped expert records
    assert "--expert-steps size the expert stage, which this run does not have" in (
        capsys.readouterr().err
    )
    assert main([*base, "--redo", "online"]) == 1
    assert "redo online: this run has no such stage (its stages: collect, lam," in (
        capsys.readouterr().err
    )
    assert main([*base, "--labels", "5000"]) == 1
    assert "labels (5000) must be fewer than the frames the run records (3000" in (
        capsys.readouterr().err
    )
    assert not Path(out).exists()


def test_discrete_only_options_on_a_continuous_task_are_refused_before_work(capsys) -> None:
    pytest.importorskip("gymnasium")
    with pytest.raises(ValueError, match="ILPO's online phase plays a Procgen game; Pendulum-v1"):
        RunConfig(env="Pendulum-v1", preset="smoke", online=True, online_ilpo=True)
    with pytest.raises(ValueError, match=r"--pseudo-label-updates\) fine-tunes on discrete"):
        RunConfig(env="Pendulum-v1", preset="smoke", pseudo_label_updates=5)
    assert RunConfig(env="coinrun", preset="smoke", pseudo_label_updates=5).pseudo_label_updates


def test_an_expert_temperature_for_a_scripted_expert_is_refused_before_work(
    tmp_path: Path, capsys
) -> None:
    pytest.importorskip("gymnasium")
    out = tmp_path / "out"
    argv = ["run", "--env", "Pendulum-v1", "--preset", "smoke", "--expert-temperature", "0.5",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    assert "Pendulum-v1's scripted expert has none" in capsys.readouterr().err
    assert not out.exists()
