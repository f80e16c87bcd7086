"""``benchmarks/expert_curves.py``: curves read back normalized, one panel per game."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lapo.envs.games import REFERENCE_RETURNS


def _run(path: Path, env: str, evals: list[tuple[int, float, float]]) -> Path:
    path.mkdir()
    (path / "checkpoint.json").write_text(json.dumps({"meta": {"config": {"env": env}}}))
    rows = [{"step": s, "return/eval_normalized": n, "return/eval_ci95": ci} for s, n, ci in evals]
    rows.append({"step": 100, "return/train_normalized": 0.25})
    (path / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
    return path


def test_curves_are_normalized_and_grouped_by_game(tmp_path: Path, load_benchmark) -> None:
    curves = load_benchmark("expert_curves")
    ref = REFERENCE_RETURNS["maze"]
    width = ref.expert - ref.random
    run = _run(tmp_path / "a", "maze", [(0, 0.1, width / 2), (50, 0.3, width)])
    curve = curves.read_curve(run)
    assert curve["env"] == "maze" and curve["train"] == ([100], [0.25])
    assert curve["eval"][0] == [0, 50] and curve["eval"][2] == pytest.approx([0.5, 1.0])
    _run(tmp_path / "b", "maze", [(0, 0.2, 1.0)])
    _run(tmp_path / "c", "ninja", [(0, 0.2, 1.0)])
    out = tmp_path / "fig" / "curves.png"
    curves.main([str(tmp_path / n) for n in "abc"] + ["--out", str(out)])
    assert out.stat().st_size > 1000
