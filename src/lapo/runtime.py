"""Run plumbing shared by the training stages: metric logging, graceful stop on signals, resume
checks, training checkpoints, and ``TrainingLoop``, the scaffold of every supervised stage."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from lapo.checkpoint import checkpoint_exists, read_meta, save_checkpoint
from lapo.paths import atomic_file
from lapo.rng import rng_state

CHECKPOINT_MINUTES = 10.0
"""Default longest wall-clock gap between two checkpoints of a training loop, in minutes, on top
of its cadence in updates: a run killed without warning (a session's end, a preempted job, an
out-of-memory kill) loses at most this much work however slow its updates are (the ``paper``
stage-1 preset on a CPU, 1,000 updates between cadence checkpoints, would otherwise lose hours)."""


def cadence_due(every: int, done: int, total: int) -> bool:
    """Whether a cadence of ``every`` updates falls after update ``done`` (1-based), the last
    update (``total``) always included: the rule of logs, evaluations and checkpoints."""
    return done % every == 0 or done == total


class CheckpointClock:
    """When a training loop checkpoints: every ``every`` updates, at the last (``total``), and
    whenever ``minutes`` of wall clock have passed since the last save (None: by updates only);
    ``clock`` returns seconds.

    Hand-written: the rule is two comparisons, and both loops (``TrainingLoop``, PPO's
    ``run_ppo``) must apply the same one. Saving at any update is safe because every stage
    resumes bitwise from any update (the same holds for the checkpoint a SIGTERM writes).

    Raises:
        ValueError: ``every`` < 1 or a negative ``minutes``.
    """

    def __init__(
        self,
        every: int,
        total: int,
        minutes: float | None = CHECKPOINT_MINUTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every < 1:
            raise ValueError(f"checkpoint cadence must be >= 1 update, got {every}")
        if minutes is not None and not minutes >= 0:
            raise ValueError(f"checkpoint_minutes must be >= 0 (or None), got {minutes}")
        self.every, self.total, self.minutes, self.clock = every, total, minutes, clock
        self.saved_at = clock()

    def due(self, done: int) -> bool:
        """Whether to save after update ``done`` (1-based count of updates done); when it is,
        the wall-clock gap restarts (the caller saves)."""
        now = self.clock()
        late = self.minutes is not None and now - self.saved_at >= 60 * self.minutes
        if late or cadence_due(self.every, done, self.total):
            self.saved_at = now
            return True
        return False


def cut_metrics(path: Path, through_step: int) -> int:
    """Cut a ``metrics.jsonl`` back to its records of ``step <= through_step`` (atomically), so
    that a run resumed from a checkpoint at ``through_step`` logs no step twice. Records a
    killed run wrote after its last checkpoint, and a torn last line, are dropped.

    Returns:
        The number of records dropped (0 when the file is missing).
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
            step = record["step"]
        except (ValueError, TypeError, KeyError):
            continue  # a torn line (kill -9 mid-write) or not a record
        if isinstance(step, int | float) and step <= through_step:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_file(path, "w") as fh:
            fh.write("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


class RunLogger:
    """Write scalar metrics to ``<run_dir>/metrics.jsonl`` and TensorBoard (``<run_dir>/tb``).

    Each ``log(step, metrics)`` call appends one JSON line ``{"step", "time", **metrics}``;
    ``step`` is in the unit the caller states (environment steps for PPO, updates for stage 1).

    Args:
        resume_step: the step of the checkpoint the run continues from (-1: a fresh run). The
            logs are cut back to it first, so that they match the checkpoint: ``metrics.jsonl``
            keeps its records of ``step <= resume_step`` (``cut_metrics``) and TensorBoard drops
            its events of later steps (``SummaryWriter(purge_step=resume_step + 1)``). None
            (default): append to what is there.
    """

    def __init__(
        self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            cut_metrics(run_dir / "metrics.jsonl", resume_step)
        self._jsonl = open(run_dir / "metrics.jsonl", "a")
        self._tb = None
        if tensorboard:
            purge = None if resume_step is None else max(resume_step + 1, 0)
            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def image(self, tag: str, image: Any, step: int = 0) -> Any:
        """Log an image to TensorBoard's images tab: ``(H, W, 3|4)`` pixels (uint8, or float in
        [0, 1]) or a PNG file path. Returns the ``(H, W, 3) uint8`` pixels logged."""
        import numpy as np

        if isinstance(image, str | Path):
            from matplotlib.image import imread

            image = imread(str(image))  # (H, W, 3|4) float in [0, 1] for PNG
        pixels = np.asarray(image)
        if pixels.dtype != np.uint8:
            pixels = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
        pixels = np.ascontiguousarray(pixels[..., :3])
        if self._tb is not None:
            self._tb.add_image(tag, pixels, step, dataformats="HWC")
        return pixels

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Log text to TensorBoard's text tab (rendered as markdown: indent code 4 spaces),
        e.g. the resolved config."""
        if self._tb is not None:
            self._tb.add_text(tag, text, step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append ``{"step", "time", **metrics}`` to metrics.jsonl (flushed; non-finite floats as
        null) and log the finite numbers to TensorBoard at ``step``."""
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in metrics.items()
        }
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        """Close metrics.jsonl and the TensorBoard writer."""
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def open_wandb(project: str, directory: Path, config: dict, name: str | None = None):
    """Start a Weights & Biases run (``wandb.init``) that mirrors a lapo run; files go under
    ``directory``. Its mode (online, offline) is wandb's own setting (``WANDB_MODE``).

    Raises:
        ImportError: wandb is not installed (``pip install 'lapo[wandb]'``).
    """
    try:
        import wandb
    except ImportError as exc:
        raise ImportError(
            "--wandb needs wandb, which is not installed; install it with "
            "pip install 'lapo[wandb]' (or pip install wandb)"
        ) from exc
    directory.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=project, dir=str(directory), config=config, name=name)


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into a flag the training loop polls.

    Inside the ``with`` block the first signal sets ``requested`` (the loop then saves a
    checkpoint and returns); a second SIGINT raises KeyboardInterrupt as usual. The previous
    handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def field_defaults(config: Any) -> dict[str, Any]:
    """A config dataclass's (class or instance) field defaults: the value a setting had in runs
    recorded before the field existed."""
    return {f.name: f.default for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING}  # fmt: skip


def check_resume_config(config: Any, stored: dict[str, Any], path: Path) -> None:
    """Refuse to resume ``path`` under a config that differs from the one it was trained with.

    Args:
        config: the dataclass config of the new invocation.
        stored: the config dict saved in the checkpoint's metadata. A field it lacks (one added
            to the config after the checkpoint was written) counts as that field's default.

    Raises:
        ValueError: naming every differing field with both values.
    """
    current = dataclasses.asdict(config)
    stored = {**field_defaults(config), **stored}
    diff = {k: (stored.get(k), v) for k, v in current.items() if stored.get(k) != v}
    if diff:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"cannot resume {path}: the config differs ({listed})")


def check_finite_weights(model: Any, step: int, path: Path) -> None:
    """Refuse to checkpoint a model with non-finite weights (the last good checkpoint stays).

    Raises:
        FloatingPointError: naming the update, up to three offending tensors, and whether a
            checkpoint is kept (only when one was written before).
    """
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point()
           and not p.isfinite().all()]  # fmt: skip
    if bad:
        kept = (
            f"the last good checkpoint {path} is kept"
            if checkpoint_exists(path)
            else "no checkpoint had been written yet"
        )
        raise FloatingPointError(
            f"non-finite weights after update {step} ({', '.join(bad[:3])}); {kept} "
            "(lower the learning rate?)"
        )


def save_training_checkpoint(
    path: Path,
    *,
    kind: str,
    model: Any,
    module_name: str,
    optimizer: Any,
    config: Any,
    step: int,
    metrics: dict,
    info: dict,
) -> None:
    """Atomically checkpoint a supervised training stage (stage 1, stage 2) for exact resume.

    Saves ``model`` under ``module_name``, the optimizer, the RNG states and metadata ``{kind,
    config (the dataclass as a dict), step (updates), rng, metrics, **info}``.

    Raises:
        FloatingPointError: non-finite weights (nothing is written; the last good checkpoint
            stays).
    """

    check_finite_weights(model, step, path)  # never overwrite the last good checkpoint
    tensors, rng_meta = rng_state()
    meta = {
        "kind": kind,
        "config": dataclasses.asdict(config),
        "step": step,
        "rng": rng_meta,
        "metrics": {k: float(v) for k, v in metrics.items()},
        **info,
    }
    save_checkpoint(
        path, modules={module_name: model}, optimizers={"optimizer": optimizer}, tensors=tensors,
        meta=meta,
    )  # fmt: skip


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
