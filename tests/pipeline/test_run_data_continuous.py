"""``lapo run --data`` on an import with float actions: stage 3 decodes them (regression), as it
does for a Gymnasium recording with a box action space."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lapo.cli import main
from lapo.data import open_dataset
from lapo.data.synthetic import continuous_sprite_episode


def test_run_on_imported_float_actions_decodes_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    episodes = [continuous_sprite_episode(rng, 16) for _ in range(12)]
    frames = np.concatenate([f for f, _ in episodes])  # (192, 64, 64, 3) uint8
    moves = np.concatenate([a for _, a in episodes])  # (192, 2) float32 in [-1, 1]
    actions = np.c_[moves, np.full(len(moves), 0.5, np.float32)]  # and a constant dimension
    src, data, out = tmp_path / "arrays.npz", tmp_path / "data", tmp_path / "run"
    np.savez(src, frames=frames, actions=actions, episode_starts=np.arange(0, 192, 16))
    assert main(["data", "import", str(src), "--out", str(data), "--no-progress"]) == 0
    with open_dataset(data) as dataset:
        assert dataset.has_actions and dataset.action_bounds[0].tolist()[2] == 0.0
    args = ["run", "--preset", "smoke", "--data", str(data), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert "decode" in stages
    decode = json.loads((out / "report" / "metrics.json").read_text())["decode"]
    assert math.isfinite(decode["test/decoder_r2"]) and decode["test/decoder_r2"] <= 1.0
    assert "test/decoder_accuracy" not in decode
    md = (out / "report" / "report.md").read_text()
    assert "R^2" in md and "no action labels" not in md
