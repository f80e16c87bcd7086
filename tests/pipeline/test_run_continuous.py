"""End to end on a continuous-control task: ``lapo run --env Pendulum-v1 --preset smoke --online``
(scripted expert recorded as pixels, stages 1-3 with regression decoding, Gaussian PPO
fine-tuning and PPO from scratch, report)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lapo.cli import main
from lapo.eval.actors import PolicyActor
from lapo.load import load_policy

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("gymnasium") is None or importlib.util.find_spec("pygame") is None,
        reason='gymnasium[classic-control] (pygame) not installed: pip install "lapo[control]"',
    ),
    # about 60 s on 2 idle cores (rendering 3,000 frames, evaluating 5 policies x 4 episodes)
    pytest.mark.slow,
]


@pytest.mark.slow
def test_lapo_run_pendulum_smoke_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--preset", "smoke", "--env", "Pendulum-v1", "--out", str(out), "--online",
            "--online-steps", "128", "--sweep", "8", "--sweep-seeds", "1", "--sweep-episodes",
            "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "data" / "manifest.json").read_text())
    assert data["action_space"] == {"type": "box", "shape": [1], "low": [-2.0], "high": [2.0]}
    assert data["source"]["policy"] == "scripted"
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert "probe_mlp_r2" in metrics["lam"] and "probe_mlp_accuracy" not in metrics["lam"]
    decode = metrics["decode"]
    assert decode["test/decoder_r2"] <= 1.0 and "test/decoder_accuracy" not in decode
    returns = metrics["returns"]
    assert set(returns) == {"expert", "random", "label_bc", "lapo_decoded"}
    assert all(math.isfinite(r["normalized"]) for r in returns.values())
    assert returns["expert"]["normalized"] > returns["random"]["normalized"] + 0.5
    md = (out / "report" / "report.md").read_text()
    assert "R^2" in md and "reference returns for Pendulum-v1" in md
    (lapo_row, bc_row) = json.loads((out / "sweep" / "label_sweep.json").read_text())
    assert (lapo_row["method"], bc_row["method"]) == ("lapo", "label-bc")  # regressed, not classed
    assert "validation_r2" in lapo_row and math.isfinite(lapo_row["normalized"])
    online = json.loads((out / "online" / "online.json").read_text())
    assert set(online["final"]) == {"LAPO fine-tuned", "PPO from scratch"}
    for arm in ("lapo-seed0", "ppo-seed0"):
        net = load_policy(out / "online" / arm)[0]
        actions = PolicyActor(net, seed=0).act(np.zeros((3, 64, 64, 3), np.uint8))
        assert actions.shape == (3, 1) and actions.dtype == np.float32
        assert np.all(np.abs(actions) <= 2.0)
