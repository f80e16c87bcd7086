"""Run plumbing under the training loops (lapo.runtime): the checkpoint clock, metric-log cuts."""

from __future__ import annotations

import json

import pytest

from lapo.runtime import CheckpointClock, cut_metrics


def test_cut_metrics_keeps_records_through_the_checkpoint_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3, 4)]
    path.write_text("\n".join(records) + '\n{"step": 5, "lo')  # killed mid-write
    assert cut_metrics(path, 2) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    assert cut_metrics(path, 2) == 0 and cut_metrics(tmp_path / "missing.jsonl", 0) == 0
    assert cut_metrics(path, -1) == 2 and path.read_text() == ""  # a fresh run starts anew


def test_checkpoint_clock_saves_by_updates_and_by_wall_clock() -> None:
    now = [0.0]  # seconds
    clock = CheckpointClock(every=100, total=250, minutes=10.0, clock=lambda: now[0])
    assert not clock.due(1) and clock.due(100) and clock.due(250)  # cadence and the last
    now[0] = 599.0
    assert not clock.due(7)
    now[0] = 600.0
    assert clock.due(7)  # ten minutes since the last save
    now[0] = 1100.0
    assert not clock.due(8)  # the gap restarts at every save
    by_updates = CheckpointClock(every=100, total=250, minutes=None, clock=lambda: now[0])
    now[0] = 1e9
    assert not by_updates.due(7) and by_updates.due(200)
    with pytest.raises(ValueError, match="checkpoint_minutes must be >= 0"):
        CheckpointClock(every=1, total=2, minutes=-1.0)
    with pytest.raises(ValueError, match="cadence must be >= 1"):
        CheckpointClock(every=0, total=2)
