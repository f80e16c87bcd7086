"""The training-loop scaffold shared by the supervised stages (lapo.training_loop.TrainingLoop)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lapo.training_loop import TrainingLoop


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


def test_a_resumed_loop_logs_the_means_an_uninterrupted_one_logs(tmp_path: Path) -> None:
    # checkpoints every 3 updates, logs every 2: the run resumed at 3 must log at 4 the mean of
    # updates 3 and 4, not of 4 alone
    from lapo.checkpoint import save_checkpoint

    def run(run_dir: Path, start: int, stop_after: int | None = None) -> list[dict]:
        logged = []

        def save(done: int, metrics: dict) -> None:
            save_checkpoint(run_dir / "checkpoint", meta={"step": done, "metrics": metrics})

        loop = TrainingLoop(
            run_dir, total=6, start=start, log_every=2, eval_every=100, checkpoint_every=3,
            save=save, summarize=lambda means, n, secs, done: dict(means),
            on_log=lambda done, m: logged.append((done, m)), progress=False,
        )  # fmt: skip
        for step in loop:
            loop.record({"loss": float(step + 1) ** 2})
            if stop_after is not None and step + 1 == stop_after:
                break
        return logged

    full = run(tmp_path / "full", 0)
    assert full == [(2, {"loss": 2.5}), (4, {"loss": 12.5}), (6, {"loss": 30.5})]
    run(tmp_path / "cut", 0, stop_after=4)  # killed after update 4; checkpoint at 3
    assert run(tmp_path / "cut", 3) == full[1:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").open()]
    assert steps == [2, 4, 6]


def test_a_loop_saves_between_cadence_checkpoints_when_minutes_pass(tmp_path: Path) -> None:
    saves: list = []
    loop = _loop(tmp_path, saves, checkpoint_every=100, checkpoint_minutes=0.0)
    for step in loop:
        loop.record({"loss": float(step)})
    assert [done for done, _ in saves] == list(range(1, 11))  # no gap allowed: every update
    saves.clear()
    loop = _loop(tmp_path / "b", saves, checkpoint_every=100, checkpoint_minutes=None)
    for step in loop:
        loop.record({"loss": float(step)})
    assert [done for done, _ in saves] == [10]  # by updates only: just the last
