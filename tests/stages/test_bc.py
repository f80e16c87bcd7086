"""Stage 2: latent behaviour cloning (``lapo.stages.bc``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lapo.checkpoint import CheckpointError, read_meta
from lapo.config import BC_PRESETS, BCConfig
from lapo.load import load_latent_policy
from lapo.stages.bc import train_bc
from lapo.stages.lam import weights_digest


def bc_smoke(**changes) -> BCConfig:
    return dataclasses.replace(BCConfig(**BC_PRESETS["smoke"]), **changes)


def test_bc_writes_latent_policy_and_resumes_bitwise(trained, tmp_path: Path) -> None:
    policy, config = load_latent_policy(trained["bc"])
    assert config == bc_smoke() and policy.latent_dim == 128
    meta = read_meta(trained["bc"] / "checkpoint")
    assert meta["kind"] == "latent-policy" and meta["step"] == 6
    lines = [json.loads(x) for x in (trained["bc"] / "metrics.jsonl").read_text().splitlines()]
    assert "test/relative_mse" in lines[-1] and np.isfinite(lines[-1]["train/mse"])
    # 3 + 3 updates with a resume in between == 6 straight
    half = tmp_path / "half"
    train_bc(
        bc_smoke(steps=6), trained["lam"], trained["data"], half, progress=False, time_budget_s=0.0
    )
    assert read_meta(half / "checkpoint")["step"] == 0
    train_bc(bc_smoke(), trained["lam"], trained["data"], half, progress=False, resume=True)
    assert weights_digest(load_latent_policy(half)[0]) == weights_digest(policy)
    with pytest.raises(FileExistsError, match="--resume"):
        train_bc(bc_smoke(), trained["lam"], trained["data"], half, progress=False)
    with pytest.raises(ValueError, match="config differs"):
        train_bc(
            bc_smoke(learning_rate=1.0),
            trained["lam"],
            trained["data"],
            half,
            progress=False,
            resume=True,
        )


def test_bc_refuses_a_checkpoint_that_is_not_a_latent_action_model(trained, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="expected a latent-action-model checkpoint"):
        train_bc(bc_smoke(), trained["bc"], trained["data"], tmp_path / "x", progress=False)
