"""Run plumbing shared by the training stages: metric logging and graceful stop on signals."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any


class RunLogger:
    """Write scalar metrics to ``<run_dir>/metrics.jsonl`` and TensorBoard (``<run_dir>/tb``).

    Each ``log(step, metrics)`` call appends one JSON line ``{"step", "time", **metrics}``;
    ``step`` is in the unit the caller states (environment steps for PPO, updates for stage 1).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "metrics.jsonl", "a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
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
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


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
        FloatingPointError: naming the update and up to three offending tensors.
    """
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point()
           and not p.isfinite().all()]  # fmt: skip
    if bad:
        raise FloatingPointError(
            f"non-finite weights after update {step} ({', '.join(bad[:3])}); the last good "
            f"checkpoint {path} is kept (lower the learning rate?)"
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
    from lapo.checkpoint import rng_state, save_checkpoint

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
