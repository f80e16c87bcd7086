"""``TrainingLoop``: the scaffold every supervised training stage shares (stage 1, stage 2, ILPO):
resume position, wall-clock budget, SIGINT/SIGTERM, progress bar, and the log / evaluation /
checkpoint cadence, so that each stage's module keeps only its loss and optimizer step."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lapo.checkpoint import checkpoint_exists, read_meta
from lapo.runtime import (
    CHECKPOINT_MINUTES,
    CheckpointClock,
    GracefulStop,
    RunLogger,
    cadence_due,
)


class TrainingLoop:
    """The scaffold every supervised training stage shares (stage 1, stage 2, later ones).

    It owns what is not the method: the resume position, the wall-clock budget, SIGINT/SIGTERM
    (finish the update, save, stop), the progress bar and the log / evaluation / checkpoint
    cadence. The stage keeps its loss and optimizer step in its own loop::

        loop = TrainingLoop(run_dir, total=config.steps, start=step, save=..., summarize=...)
        for step in loop:                      # step: 0-based index of the update to run
            loss, stats = ...                  # the stage's loss, readable in place
            loop.check_finite(loss, step)      # before backward: nothing is updated or saved
            ...backward, optimizer step...
            loop.record(stats)                 # per-update statistics (floats or 0-d tensors)

    After the update ``done = step + 1`` (units: updates): every ``log_every`` updates and at the
    last, ``metrics = summarize(means, count, seconds, done)`` with ``means`` the per-update mean
    of every recorded statistic since the last log; every ``eval_every`` updates and at the last
    ``metrics |= evaluate(done)``; the metrics go to ``metrics.jsonl`` and TensorBoard
    (``RunLogger``, main process only) and to ``on_log(done, metrics)``. Every
    ``checkpoint_every`` updates, at the last, at least every ``checkpoint_minutes`` of wall
    clock (``CheckpointClock``) and when stopped early, ``save(done, metrics)`` (main process
    only); the metrics saved also hold the sums and count of the statistics
    recorded since the last log (keys ``pending/sum/<name>``, ``pending/count``), which a loop
    resumed from that checkpoint (``<run_dir>/checkpoint``) takes up, so that its logs are the
    ones an uninterrupted run writes (and ``metrics.jsonl`` and TensorBoard are first cut back
    to the checkpoint's update, ``RunLogger``).

    Attributes (after the loop): ``step`` (updates done), ``metrics`` (the last logged),
    ``stop_reason`` (None: all updates ran; else ``time budget``, ``SIGINT`` or ``SIGTERM``).

    Raises:
        ValueError: a negative ``time_budget_s`` (seconds) or ``checkpoint_minutes``.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        total: int,
        start: int,
        log_every: int,
        eval_every: int,
        checkpoint_every: int,
        save: Callable[[int, dict], None],
        summarize: Callable[[dict, int, float, int], dict],
        evaluate: Callable[[int], dict] | None = None,
        on_log: Callable[[int, dict], None] | None = None,
        time_budget_s: float | None = None,
        progress: bool = True,
        main: bool = True,
        desc: str | None = None,
        checkpoint_minutes: float | None = CHECKPOINT_MINUTES,
    ) -> None:
        self.run_dir, self.total, self.step = Path(run_dir), total, start
        self.log_every, self.eval_every = log_every, eval_every
        self.checkpoints = CheckpointClock(checkpoint_every, total, checkpoint_minutes)
        self.save, self.summarize, self.evaluate, self.on_log = save, summarize, evaluate, on_log
        self.time_budget_s, self.progress = time_budget_s, progress
        self.main, self.desc = main, desc
        if time_budget_s is not None and not time_budget_s >= 0:
            raise ValueError(f"time_budget_s must be >= 0 seconds, got {time_budget_s}")
        self.metrics: dict = {}
        self.stop_reason: str | None = None
        self._sums: dict[str, Any] = {}  # floats, or 0-d tensors on an accelerator
        self._count = 0

    def check_finite(self, loss: Any, step: int) -> None:
        """Raise before a non-finite loss reaches the weights.

        Raises:
            FloatingPointError: naming the update and whether a checkpoint is kept.
        """
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if not math.isfinite(value):
            kept = (
                f"the last good checkpoint in {self.run_dir} is kept"
                if (self.run_dir / "checkpoint.json").exists()
                else "no checkpoint had been written yet"
            )
            raise FloatingPointError(
                f"non-finite loss ({value}) at update {step}; stopped, {kept} "
                "(lower the learning rate?)"
            )

    def record(self, stats: dict[str, Any]) -> None:
        """Add one update's statistics to the means of the next log.

        Statistics on an accelerator are summed there and read at the log, not per update: a read
        would wait for the update to finish before the next one could be queued.
        """
        for k, v in stats.items():
            on_device = getattr(getattr(v, "device", None), "type", "cpu") != "cpu"  # a tensor
            v = v.detach().float() if on_device else float(v)
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1

    def _with_pending(self, metrics: dict) -> dict:
        """``metrics`` plus the statistics recorded since the last log, for the checkpoint."""
        if not self._count:
            return metrics
        pending = {f"pending/sum/{k}": float(v) for k, v in self._sums.items()}
        return {**metrics, **pending, "pending/count": self._count}

    def _take_up_pending(self) -> None:
        """Restore the statistics since the last log from the checkpoint resumed from."""
        path = self.run_dir / "checkpoint"
        if self.step == 0 or not checkpoint_exists(path):
            return
        meta = read_meta(path)
        saved = meta.get("metrics")
        if meta.get("step") != self.step or not isinstance(saved, dict):
            return
        prefix = "pending/sum/"
        self._sums = {k[len(prefix) :]: float(v) for k, v in saved.items()
                      if k.startswith(prefix)}  # fmt: skip
        self._count = int(saved.get("pending/count", 0))

    def __iter__(self) -> Iterator[int]:
        logger = RunLogger(self.run_dir, resume_step=self.step) if self.main else None
        self._take_up_pending()
        bar = tqdm(total=self.total, initial=self.step, unit="upd", desc=self.desc,
                   disable=not self.progress or not self.main, mininterval=1.0)  # fmt: skip
        started = time.monotonic()
        t0 = time.perf_counter()
        try:
            with GracefulStop() as stop, bar:
                while self.step < self.total and stop.requested is None:
                    budget = self.time_budget_s
                    if budget is not None and time.monotonic() - started > budget:
                        stop.requested = "time budget"
                        break
                    yield self.step
                    self.step += 1
                    done = self.step
                    bar.update(1)
                    if cadence_due(self.log_every, done, self.total):
                        means = {k: float(v) / self._count for k, v in self._sums.items()}
                        seconds = time.perf_counter() - t0
                        self.metrics = self.summarize(means, self._count, seconds, done)
                        if self.evaluate is not None and cadence_due(
                            self.eval_every, done, self.total
                        ):
                            self.metrics |= self.evaluate(done)
                        if logger:
                            logger.log(done, self.metrics)
                        if self.on_log is not None:
                            self.on_log(done, self.metrics)
                        self._sums, self._count, t0 = {}, 0, time.perf_counter()
                    if self.checkpoints.due(done) and self.main:
                        self.save(done, self._with_pending(self.metrics))
                if stop.requested is not None and self.main:
                    self.save(self.step, self._with_pending(self.metrics))
                    print(f"{stop.requested}: saved checkpoint at update {self.step} in "
                          f"{self.run_dir}")  # fmt: skip
                self.stop_reason = stop.requested
        finally:
            if logger:
                logger.close()
