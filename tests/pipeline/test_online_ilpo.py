"""The ILPO arm of ``lapo run --online --online-ilpo``: curve, final evaluation, report section."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.config import BC_PRESETS, BCConfig
from lapo.data.synthetic import write_sprite_dataset
from lapo.eval.report import Report
from lapo.load import save_policy
from lapo.models.build import build_latent_policy
from lapo.pipeline.online import ilpo_duration_note, run_online_comparison
from lapo.pipeline.plan import Manifest
from lapo.pipeline.report.comparisons import ilpo_section
from lapo.pipeline.run import write_run_config
from lapo.pipeline.run_config import RunConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ilpo_seeds.py"


def _latent_policy(path: Path) -> None:
    torch.manual_seed(0)
    bc = BCConfig(**BC_PRESETS["smoke"])
    save_policy(path / "checkpoint", "latent-policy",
                {"policy": build_latent_policy(bc, 8)},
                {"config": dataclasses.asdict(bc), "latent_dim": 8,
                 "frame_shape": [64, 64, 3]})  # fmt: skip


@pytest.mark.slow
def test_online_comparison_with_ilpo_arm(tmp_path: Path) -> None:
    _latent_policy(tmp_path / "bc")
    write_sprite_dataset(tmp_path / "data", episodes=8, length=10, size=64, seed=0)
    config = RunConfig(env="coinrun", preset="smoke", out=tmp_path / "run", online=True,
                       online_ilpo=True, online_steps=128, online_seeds=2)  # fmt: skip
    directory = tmp_path / "run" / "online"
    final = run_online_comparison(config, tmp_path / "bc", tmp_path / "lam", directory,
                                  progress=False, data_dir=tmp_path / "data")  # fmt: skip
    assert set(final) == {"LAPO fine-tuned", "PPO from scratch", "ILPO"}
    online = json.loads((directory / "online.json").read_text())
    curve, _ = online["curves"]["ILPO"]
    assert curve["steps"] == [64, 128]  # environment steps, one evaluation per smoke rollout
    assert curve["key"] == "return/eval_normalized"
    evaluations = online["evaluation"]["ILPO"]
    assert [e["episodes"] for e in evaluations] == [config.eval_episodes] * 2
    assert final["ILPO"] == pytest.approx(np.mean([e["normalized"] for e in evaluations]))
    # the offline phase trained once (the run's seed) and both online seeds started from it
    assert sorted(p.name for p in directory.glob("ilpo*")) == ["ilpo", "ilpo-seed0", "ilpo-seed1"]
    for seed in (0, 1):
        meta = json.loads((directory / f"ilpo-seed{seed}" / "checkpoint.json").read_text())
        assert meta["meta"]["offline"] == str((directory / "ilpo" / "offline").resolve())
        assert meta["meta"]["config"]["seed"] == seed
    rep = Report("test")
    ilpo_section(rep, directory / "ilpo" / "offline")
    md, _ = rep.write(tmp_path / "report")
    text = md.read_text()
    assert "ILPO collapse diagnostic" in text and "collapse.png" in text


@pytest.mark.slow
def test_ilpo_seeds_script_trains_the_seeds_the_comparison_then_reuses(tmp_path: Path) -> None:
    _latent_policy(tmp_path / "bc")
    run = tmp_path / "run"
    write_sprite_dataset(run / "data", episodes=8, length=10, size=64, seed=0)
    config = RunConfig(env="coinrun", preset="smoke", out=run, online=True, online_ilpo=True,
                       online_steps=128, online_seeds=2)  # fmt: skip
    write_run_config(config)
    Manifest(run / "pipeline.json").save()  # a run whose recording finished
    done = subprocess.run([sys.executable, str(SCRIPT), str(run), "--seeds", "0", "1",
                           "--device", "cpu"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["seed 0 finished", "seed 1 finished"]
    checkpoint = run / "online" / "ilpo-seed{}" / "checkpoint.json"
    trained = {s: Path(str(checkpoint).format(s)).read_bytes() for s in (0, 1)}
    final = run_online_comparison(config, tmp_path / "bc", tmp_path / "lam", run / "online",
                                  progress=False, data_dir=run / "data")  # fmt: skip
    assert "ILPO" in final
    for seed, before in trained.items():  # found finished: evaluated, not trained again
        assert Path(str(checkpoint).format(seed)).read_bytes() == before
    # a run made without the ILPO arm is refused
    write_run_config(dataclasses.replace(config, online_ilpo=False))
    refused = subprocess.run([sys.executable, str(SCRIPT), str(run), "--seeds", "0"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "--online-ilpo" in refused.stderr


def test_ilpo_duration_note_where_a_speed_was_measured() -> None:
    config = RunConfig(env="coinrun", preset="cpu", online=True, online_ilpo=True,
                       online_steps=1_000_000, online_seeds=3)  # fmt: skip
    note = ilpo_duration_note(config, "cpu")
    assert "3,000,000 online env steps" in note and "9.8 h" in note  # 3M / 85 per s
    assert ilpo_duration_note(config, "cuda") is None  # not measured there: no guess


def test_online_ilpo_needs_online() -> None:
    with pytest.raises(ValueError, match="online_ilpo"):
        RunConfig(env="coinrun", preset="smoke", online=False, online_ilpo=True)
