"""Run plumbing shared by the training stages: the checkpoint cadence (``cadence_due``,
``CheckpointClock``), metric logging (``RunLogger``), graceful stop on signals (``GracefulStop``),
resume checks and training checkpoints. ``lapo.training_loop`` builds the supervised stages'
scaffold on them; PPO's loop (``lapo.rl.loop``) uses them directly."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from lapo.checkpoint import checkpoint_exists, save_checkpoint
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
