"""The expert stage of ``lapo run``: when it runs, its estimate, resume, and the report's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lapo.cli import main
from lapo.experts import expert_card, shipped_games
from lapo.pipeline.expert_stage import (
    below_bar_note,
    duration_estimate,
    expert_config,
    expert_origin,
    machine_class,
    run_expert_stage,
    trains_expert,
)
from lapo.pipeline.run_config import RunConfig
from lapo.safety import exclusive
from lapo.stages.expert import train_expert


def test_trains_expert_only_without_a_shipped_or_given_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("lapo.pipeline.expert_stage.shipped_games", lambda: ["coinrun"])
    assert trains_expert(RunConfig(env="bigfish", preset="smoke", out=tmp_path))
    assert not trains_expert(RunConfig(env="coinrun", preset="smoke", out=tmp_path))
    assert not trains_expert(RunConfig(env="bigfish", preset="smoke", out=tmp_path, expert="x"))
    assert trains_expert(RunConfig(env="coinrun", preset="smoke", out=tmp_path, train_expert=True))


def test_expert_steps_presets_and_validation(tmp_path: Path) -> None:
    assert RunConfig(preset="paper", out=tmp_path).expert_steps == 50_000_000
    assert RunConfig(preset="cpu", out=tmp_path).expert_steps == 8_000_000
    smoke = RunConfig(preset="smoke", out=tmp_path)
    assert expert_config(smoke).num_updates == 3 and expert_config(smoke).encoder == "nature"
    with pytest.raises(ValueError, match="one rollout"):
        RunConfig(preset="smoke", out=tmp_path, expert_steps=10)
    with pytest.raises(ValueError, match="train_expert"):
        RunConfig(out=tmp_path, expert="x", train_expert=True)
    with pytest.raises(ValueError, match="expert_minutes"):
        RunConfig(out=tmp_path, expert_minutes=0)


def test_duration_estimate_from_the_measured_speed(tmp_path: Path) -> None:
    config = RunConfig(env="bigfish", preset="cpu", out=tmp_path)
    # cpu preset: 8M steps in whole updates of 64 x 256 = 16,384 steps: 488 updates
    text = duration_estimate(config, tmp_path / "expert", "cpu")
    assert "7,995,392 of 7,995,392 env steps" in text
    assert "71 min at 1,900 steps/s" in text and "an estimate" in text  # 7,995,392 / 1900 / 60
    assert "31 min at 4,300 steps/s" in duration_estimate(config, tmp_path / "expert", "cuda")
    assert "no measured speed" in duration_estimate(config, tmp_path / "expert", "mps")
    # a CPU without native bf16 trains in fp32, at its own measured speed
    fp32 = duration_estimate(config, tmp_path / "expert", "cpu-fp32")
    assert "4.9 h at 455 steps/s" in fp32 and "AVX2" in fp32  # 7,995,392 / 455 / 3600
    # a run that logged updates is estimated from its own speed and its steps left
    run = tmp_path / "own"
    run.mkdir()
    rows = [{"step": 1, "steps_per_second": s} for s in (100.0, 300.0, 200.0)]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
    text = duration_estimate(config, run, "cuda")
    assert "at 200 steps/s (measured in this run" in text
    assert "11.1 h" in text  # 7,995,392 / 200 s


def test_expert_origin_names_shipped_and_user_experts(tmp_path: Path) -> None:
    shipped = expert_origin(RunConfig(env="coinrun", preset="smoke", out=tmp_path), {})
    assert shipped.startswith("shipped with lapo (coinrun")
    for game in shipped_games():  # each names its whole training, figure, seed and the bar
        card = expert_card(game)
        text = expert_origin(RunConfig(env=game, preset="smoke", out=tmp_path), {})
        bar = "meets" if card.meets_bar else "below"
        assert f"{card.env_steps + card.prior_env_steps:,} env steps" in text
        assert (
            f"normalized return {card.evaluation['normalized']:.3f} (200 episodes, seed 7; "
            f"{bar} the 0.5 bar)"
        ) in text
    user = expert_origin(RunConfig(env="bigfish", expert="/x/y", out=tmp_path), {})
    assert user == "the user's: /x/y"


@pytest.mark.slow  # the whole smoke pipeline: 14 s on 2 cores, up to 34 s when they are shared
def test_lapo_run_trains_and_resumes_the_expert_of_an_unshipped_game(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    config = RunConfig(env="bigfish", preset="smoke", out=out, train_expert=True)
    # an expert stage stopped after 1 of its 3 updates (as by Ctrl-C), inside the run
    # directory's lock as `lapo run` holds it: rerunning resumes it
    with exclusive(out):
        train_expert(expert_config(config), out / "expert", max_updates=1, progress=False)
    args = ["run", "--preset", "smoke", "--env", "bigfish", "--train-expert", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "expert stage: PPO on bigfish (nature x1), 128 of 192 env steps to train" in printed
    steps = [
        json.loads(r)["step"] for r in (out / "expert" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [s for s in steps if s] == [64, 128, 192]  # one record per update, none trained twice
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert stages["expert"]["summary"]["env_steps"] == 192
    assert stages["expert"]["settings"]["total_steps"] == 192
    assert stages["collect"]["summary"]["expert"] == str(out / "expert")  # it recorded the data
    md = (out / "report" / "report.md").read_text()
    assert "| expert (records the data) | trained here by the expert stage: 192 of 192" in md
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    normalized = metrics["expert_stage"]["heldout_normalized"]
    assert f"held-out normalized return {normalized:.3f}" in metrics["expert_origin"]


def test_expert_minutes_ends_the_stage_with_a_usable_expert(tmp_path: Path) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path, expert_minutes=1e-9)
    summary = run_expert_stage(config, tmp_path / "expert", progress=False)
    # the budget is spent before the first update: a checkpoint at 0 steps, evaluated here
    assert summary["budget_stopped"] and summary["env_steps"] == 0
    assert summary["total_steps"] == 192 and isinstance(summary["heldout_normalized"], float)
    origin = expert_origin(config, {"expert": {"summary": summary}})
    assert "0 of 192 env steps (ended by expert_minutes)" in origin


def test_machine_class_tells_cpus_without_native_bf16(monkeypatch) -> None:
    import lapo.device

    monkeypatch.setattr(lapo.device, "native_bf16", lambda device: (True, "AVX-512 BF16"))
    assert machine_class("cpu") == "cpu"
    monkeypatch.setattr(lapo.device, "native_bf16", lambda device: (False, "AVX2"))
    assert machine_class("cpu") == "cpu-fp32"
    assert machine_class("meta") == "meta"  # other device types are their type


def test_below_bar_note_only_for_shipped_experts_below_the_bar() -> None:
    for game in shipped_games():
        note = below_bar_note(game)
        assert (note is None) == bool(expert_card(game).meets_bar)
        if note is not None:
            assert f"shipped {game} expert is below the 0.5 bar" in note and "--expert DIR" in note
    with pytest.raises(FileNotFoundError, match="no shipped expert"):
        below_bar_note("nope")


def test_an_expert_stopped_early_is_noted_a_chosen_one_is_not(tmp_path) -> None:
    import torch

    from lapo.checkpoint import save_checkpoint
    from lapo.pipeline.run import unfinished_note

    def expert(name: str, **meta) -> Path:
        path = tmp_path / name
        meta = {"kind": "ppo-expert", "config": {"total_steps": 1000}, **meta}
        save_checkpoint(path / "checkpoint", modules={"policy": torch.nn.Linear(2, 2)}, meta=meta)
        return path

    note = unfinished_note(expert("stopped", env_steps=400))
    assert note is not None and "stopped at 400 of its 1,000 training steps" in note
    assert unfinished_note(expert("done", env_steps=1000)) is None
    assert unfinished_note(expert("best", env_steps=400, selected_by="evaluation")) is None
    assert unfinished_note(tmp_path / "missing") is None
