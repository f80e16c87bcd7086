"""The ILPO arm of ``lapo run --online --online-ilpo``: curve, final evaluation, report section."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.config import BC_PRESETS, BCConfig
from lapo.data.synthetic import write_sprite_dataset
from lapo.eval.report import Report
from lapo.load import save_policy
from lapo.models.build import build_latent_policy
from lapo.pipeline.online import run_online_comparison
from lapo.pipeline.plan import RunConfig
from lapo.pipeline.report import _ilpo_section


def test_online_comparison_with_ilpo_arm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bc = BCConfig(**BC_PRESETS["smoke"])
    save_policy(tmp_path / "bc" / "checkpoint", "latent-policy",
                {"policy": build_latent_policy(bc, 8)},
                {"config": dataclasses.asdict(bc), "latent_dim": 8,
                 "frame_shape": [64, 64, 3]})  # fmt: skip
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
    _ilpo_section(rep, directory / "ilpo" / "offline")
    md, _ = rep.write(tmp_path / "report")
    text = md.read_text()
    assert "ILPO collapse diagnostic" in text and "collapse.png" in text


def test_online_ilpo_needs_online() -> None:
    with pytest.raises(ValueError, match="online_ilpo"):
        RunConfig(env="coinrun", preset="smoke", online=False, online_ilpo=True)
