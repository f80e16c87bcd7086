"""The training-loop scaffold shared by the supervised stages (lapo.runtime.TrainingLoop)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lapo.runtime import TrainingLoop


def _loop(tmp_path: Path, saves: list, **kw) -> TrainingLoop:
    args = dict(
        total=10, start=0, log_every=4, eval_every=8, checkpoint_every=5,
        save=lambda done, metrics: saves.append((done, dict(metrics))),
        summarize=lambda means, count, seconds, done: {"loss": means.get("loss"), "count": count},
        evaluate=lambda done: {"test/loss": -done}, progress=False,
    )  # fmt: skip
    return TrainingLoop(tmp_path, **{**args, **kw})


def _logged(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_cadence_of_logs_evaluations_and_checkpoints(tmp_path: Path) -> None:
    saves: list = []
    loop = _loop(tmp_path, saves)
    seen = []
    for step in loop:
        seen.append(step)
        loop.record({"loss": float(step)})
    assert seen == list(range(10)) and loop.step == 10 and loop.stop_reason is None
    rows = _logged(tmp_path)
    assert [r["step"] for r in rows] == [4, 8, 10]  # every log_every updates and the last
    assert rows[0]["loss"] == pytest.approx((0 + 1 + 2 + 3) / 4) and rows[0]["count"] == 4
    assert rows[2]["loss"] == pytest.approx((8 + 9) / 2) and rows[2]["count"] == 2
    assert "test/loss" not in rows[0] and rows[1]["test/loss"] == -8 and rows[2]["test/loss"] == -10
    assert [done for done, _ in saves] == [5, 10]  # every checkpoint_every updates and the last
    assert saves[0][1]["loss"] == rows[0]["loss"]  # saved with the last logged metrics


def test_resume_position_and_time_budget(tmp_path: Path) -> None:
    saves: list = []
    loop = _loop(tmp_path, saves, start=7)
    assert list(loop) == [7, 8, 9]
    saves.clear()
    stopped = _loop(tmp_path / "b", saves, time_budget_s=0.0)
    assert list(stopped) == [] or stopped.stop_reason == "time budget"
    assert stopped.stop_reason == "time budget" and saves == [(0, {})]  # saved on the way out


def test_non_finite_loss_stops_before_the_update_and_says_what_is_kept(tmp_path: Path) -> None:
    loop = _loop(tmp_path, [])
    loop.check_finite(1.5, 0)  # finite: nothing happens
    with pytest.raises(FloatingPointError, match="at update 3.*no checkpoint had been written"):
        loop.check_finite(math.nan, 3)
    (tmp_path / "checkpoint.json").write_text("{}")
    with pytest.raises(FloatingPointError, match="last good checkpoint .* is kept"):
        loop.check_finite(math.inf, 4)


class _DeviceScalar:
    """A 0-d statistic on an accelerator: summable there, read (``float``) only when counted."""

    device = type("Device", (), {"type": "cuda"})()
    reads = 0

    def __init__(self, value: float) -> None:
        self.value = value

    def detach(self) -> _DeviceScalar:
        return self

    def float(self) -> _DeviceScalar:
        return self

    def __radd__(self, other) -> _DeviceScalar:
        return _DeviceScalar(float(other) + self.value) if not isinstance(other, _DeviceScalar) \
            else _DeviceScalar(other.value + self.value)  # fmt: skip

    def __add__(self, other) -> _DeviceScalar:
        return self.__radd__(other)

    def __float__(self) -> float:
        _DeviceScalar.reads += 1
        return self.value


def test_statistics_on_an_accelerator_are_read_at_the_log_not_per_update(tmp_path: Path) -> None:
    loop = _loop(tmp_path, [], total=8, log_every=4, checkpoint_every=100)
    _DeviceScalar.reads = 0
    for step in loop:
        before = _DeviceScalar.reads
        loop.record({"loss": _DeviceScalar(float(step))})
        assert _DeviceScalar.reads == before  # recording reads nothing
    assert _DeviceScalar.reads == 2  # one read per log of the one statistic
    assert [r["loss"] for r in _logged(tmp_path)] == [1.5, 5.5]
