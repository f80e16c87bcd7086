"""The PPO loop shared by expert training, LAPO fine-tuning and PPO from scratch: ``run_ppo``
drives a ``lapo.rl.trainer.PPOTrainer`` through its updates with learning-rate annealing, logs
against environment steps, held-out evaluation, the best checkpoint, periodic checkpoints,
graceful stop and time budgets. A resumed run ends bitwise where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lapo.checkpoint import CHECKPOINT, checkpoint_exists, read_meta, save_checkpoint
from lapo.config import PPOConfig
from lapo.envs import normalized_return
from lapo.rl.trainer import PPOTrainer
from lapo.runtime import (
    CHECKPOINT_MINUTES,
    CheckpointClock,
    GracefulStop,
    RunLogger,
    check_resume_config,
)


class UpdateHook(Protocol):
    """Extra work after every PPO update whose state is saved with the run (e.g. the hybrid
    fine-tuning's decoder retraining, ``lapo.stages.finetune``)."""

    def after_update(self, trainer: PPOTrainer) -> dict[str, float]:
        """Called after ``trainer.update`` was incremented; returns metrics to log."""
        ...

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors that a resumed run needs (saved in the checkpoint)."""
        ...

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore ``state()``."""
        ...


def check_run_dir(
    run_dir: Path, config: Any, resume: bool, inputs: dict[str, str] | None = None
) -> bool:
    """Check ``run_dir`` before any work starts; return whether to restore its checkpoint.

    Args:
        inputs: ``{config field: checkpoint digest}`` of the input checkpoints the config names
            by path (``lapo.checkpoint.checkpoint_digest``), recorded in the checkpoint's meta as
            ``inputs_sha256``: an input whose path changed but whose digest did not (the run
            directory holding it was moved or copied) is the same input, not a changed config.

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is False.
        ValueError: ``resume`` with a config that differs from the checkpoint's (fields named).
    """
    path = Path(run_dir) / CHECKPOINT
    if not checkpoint_exists(path):
        return False
    if not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run; pass resume=True (--resume) to continue it"
        )
    meta = read_meta(path)
    stored = dict(meta["config"])
    recorded = meta.get("inputs_sha256") or {}
    for name, digest in (inputs or {}).items():
        if recorded.get(name) == digest:  # the same checkpoint, perhaps somewhere else now
            stored[name] = getattr(config, name)
    check_resume_config(config, stored, path)
    return True


def _train_metrics(trainer: PPOTrainer, metrics: dict, seconds: float) -> dict:
    cfg = trainer.config
    metrics["steps_per_second"] = cfg.batch_size / seconds
    metrics["train/learning_rate"] = trainer.optimizer.param_groups[0]["lr"]
    if trainer.recent_returns:
        metrics["return/train_mean100"] = float(np.mean(trainer.recent_returns))
        metrics["return/train_normalized"] = float(
            normalized_return(cfg.env, metrics["return/train_mean100"])
        )
    return metrics


def _evaluation_due(config: PPOConfig, update: int) -> bool:
    """Every ``eval_every`` updates and after the last one (never when ``eval_every`` is 0)."""
    return bool(config.eval_every) and (
        update % config.eval_every == 0 or update == config.num_updates
    )


def _eval_metrics(result) -> dict[str, float]:
    """``return/eval_*`` metrics of an ``EvalResult``."""
    return {"return/eval_mean": result.mean, "return/eval_ci95": result.ci95,
            "return/eval_normalized": result.normalized}  # fmt: skip


def _save_best(trainer: PPOTrainer, out: Path, kind: str, result, meta: dict | None) -> None:
    """Weights-only checkpoint of ``trainer.net`` in ``out`` with the evaluation that chose it
    (an ``EvalResult``'s summary, without its per-episode returns)."""
    evaluation = {
        "game": result.game, "episodes": len(result.returns), "mean": float(result.mean),
        "ci95": float(result.ci95), "normalized": float(result.normalized),
        "normalized_ci95": float(result.normalized_ci95), "start_level": result.start_level,
        "num_levels": result.num_levels,
    }  # fmt: skip
    save_checkpoint(
        out / CHECKPOINT,
        modules={"policy": trainer.net},
        meta=(meta or {})
        | {
            "kind": kind,
            "config": dataclasses.asdict(trainer.config),
            "update": trainer.update,
            "env_steps": trainer.env_steps,
            "selected_by": evaluation,
        },
    )


def run_ppo(
    trainer: PPOTrainer,
    run_dir: Path,
    *,
    kind: str,
    restore: bool = False,
    meta: dict | None = None,
    hook: UpdateHook | None = None,
    evaluate: Callable[[nn.Module], Any] | None = None,
    progress: bool = True,
    time_budget_s: float | None = None,
    max_updates: int | None = None,
    best_dir: Path | None = None,
    best_from_start: bool = True,
    checkpoint_minutes: float | None = CHECKPOINT_MINUTES,
) -> dict:
    """Train until ``config.num_updates`` updates (or a stop); return the last update's metrics
    and ``stop_reason`` (None when all updates ran, else ``time budget``, ``SIGINT``, ...).

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (latest state, of
    ``kind``, with ``meta`` added; written every ``checkpoint_every`` updates, at the end, on a
    stop and at least every ``checkpoint_minutes`` of wall clock), ``metrics.jsonl`` and
    ``tb/`` (TensorBoard), one record per update with x-axis environment steps: ``train/*``
    losses, ``steps_per_second``, ``return/train_mean100`` and ``return/train_normalized``
    (last 100 training episodes), and every ``eval_every`` updates, at the end, and once before
    the first update of a fresh run (a record at step 0 holding only these)
    ``return/eval_mean``, ``return/eval_ci95`` and ``return/eval_normalized`` from
    ``evaluate(net)`` (an ``EvalResult``).

    Args:
        restore: continue from ``run_dir``'s checkpoint (see ``check_run_dir``).
        hook: work after every update, saved and restored with the run.
        time_budget_s: stop (with a checkpoint) after this many seconds of wall clock.
        max_updates: stop (with a checkpoint) after this many updates in this call.
        best_dir: after every evaluation whose normalized return beats every earlier one of the
            run, write the network there as a weights-only checkpoint of ``kind`` (config,
            update, env_steps and the evaluation in its meta): the best checkpoint, as chosen
            on the evaluation levels (re-evaluate it with another seed before reporting it).
        best_from_start: the evaluation before the first update is a candidate for
            ``best_dir`` (a network that starts from a trained one); False: only trained
            networks are (a network trained from scratch starts at random play, and an
            untrained network is no expert even where training never beats it).
        checkpoint_minutes: the longest wall-clock gap between two checkpoints (None: by
            updates only; ``lapo.runtime.CHECKPOINT_MINUTES``).
        Stops and checkpoints are run control only: a resumed run ends bitwise where an
        uninterrupted one does.

    Raises:
        ValueError: a negative ``time_budget_s`` or ``checkpoint_minutes``.
    """
    if time_budget_s is not None and not time_budget_s >= 0:
        raise ValueError(f"time_budget_s must be >= 0 seconds, got {time_budget_s}")
    cfg, run_dir = trainer.config, Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    checkpoints = CheckpointClock(cfg.checkpoint_every, cfg.num_updates, checkpoint_minutes)
    if restore:
        ckpt = trainer.restore(ckpt_path)
        if hook is not None:
            prefix = "hook/"
            hook.load_state({k[len(prefix) :]: v for k, v in ckpt.tensors.items()
                             if k.startswith(prefix)})  # fmt: skip
    # logs cut back to the checkpoint (x-axis: environment steps); a fresh run starts them anew
    logger = RunLogger(run_dir, resume_step=trainer.env_steps if restore else -1)
    metrics: dict = {}
    best = ckpt.meta.get("best_eval_normalized") if restore else None

    def save() -> None:
        tensors = {f"hook/{k}": v for k, v in (hook.state() if hook else {}).items()}
        run_meta = (meta or {}) | {"best_eval_normalized": best}
        trainer.save(ckpt_path, kind, metrics, meta=run_meta, tensors=tensors)

    def evaluated() -> dict[str, float]:
        nonlocal best
        result = evaluate(trainer.net)
        candidate = best_from_start or trainer.update > 0
        if best_dir is not None and candidate and math.isfinite(result.normalized):
            if best is None or result.normalized > best:
                best = float(result.normalized)
                _save_best(trainer, Path(best_dir), kind, result, meta)
        return _eval_metrics(result)

    bar = tqdm(total=cfg.num_updates * cfg.batch_size, initial=trainer.env_steps, unit="step",
               unit_scale=True, disable=not progress, mininterval=1.0)  # fmt: skip
    started, first_update = time.monotonic(), trainer.update
    if evaluate is not None and cfg.eval_every and trainer.update == 0:
        # the starting point of the return curve (paper Figure 3 starts at 0 steps)
        logger.log(0, evaluated())
    with GracefulStop() as stop, bar:
        while trainer.update < cfg.num_updates and stop.requested is None:
            if time_budget_s is not None and time.monotonic() - started > time_budget_s:
                stop.requested = "time budget"
                break
            if max_updates is not None and trainer.update - first_update >= max_updates:
                stop.requested = "max_updates"
                break
            t0 = time.perf_counter()
            frac = 1.0 - trainer.update / cfg.num_updates if cfg.anneal_lr else 1.0
            trainer.set_learning_rate(frac)
            metrics = trainer.learn(trainer.rollout())
            trainer.update += 1
            if hook is not None:
                metrics |= hook.after_update(trainer)
            metrics = _train_metrics(trainer, metrics, time.perf_counter() - t0)
            if evaluate is not None and _evaluation_due(cfg, trainer.update):
                metrics |= evaluated()
            logger.log(trainer.env_steps, metrics)
            bar.update(cfg.batch_size)
            bar.set_postfix(ret=f"{metrics.get('return/train_mean100', float('nan')):.2f}",
                            sps=f"{metrics['steps_per_second']:.0f}", refresh=False)  # fmt: skip
            if checkpoints.due(trainer.update):
                save()
        if stop.requested is not None:
            save()
            print(f"{stop.requested}: saved checkpoint at update {trainer.update} in {run_dir}")
    logger.close()
    trainer.env.close()
    metrics["stop_reason"] = stop.requested  # None: all updates done
    return metrics
