"""The one PPO loop of the project: expert training, LAPO fine-tuning and PPO from scratch.

``PPOTrainer`` holds everything a run mutates (network, optimizer, sampling generator, reward
normalizer, environments, rollout buffer) and its two steps: ``rollout`` collects ``num_steps``
steps of every environment with the current policy, ``learn`` computes GAE advantages and makes
``epochs`` passes of clipped-PPO minibatch updates (Cobbe et al. 2020 settings). ``run_ppo`` is
the loop around them: learning-rate annealing, logging against environment steps, held-out
evaluation, checkpoints, graceful stop and time budgets. Checkpoints hold the network, optimizer,
sampling generator, reward-normalizer statistics and the environments' own snapshots, so that a
resumed run continues bitwise.

The stages give the trainer its network, environments and trained parameters (``params``); the
trainer imports no stage, model or environment.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lapo.checkpoint import (
    CHECKPOINT,
    Checkpoint,
    checkpoint_exists,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from lapo.config import PPOConfig
from lapo.device import autocast
from lapo.envs import normalized_return
from lapo.rl.buffer import RolloutBuffer
from lapo.rl.normalize import RewardNormalizer
from lapo.rl.ppo import compute_gae, ppo_loss, sample_actions, sample_gaussian_actions
from lapo.runtime import GracefulStop, RunLogger, check_resume_config


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


class PPOTrainer:
    """One PPO run's state and its two steps, ``rollout`` and ``learn``.

    Args:
        config: the PPO settings (rollout size, losses, learning rate, precision, seed).
        net: the actor-critic, ``net(obs (B, H, W, C) uint8) -> (logits (B, A) float32,
            value (B,) float32)``. A continuous policy (``ActorCritic`` with bounds) returns the
            Gaussian mean instead of logits and has ``log_std`` and ``action_bounds``: actions
            are sampled unbounded in unit space, stored with the log-probability of that
            unclipped sample, and sent to the environment clipped and mapped onto its bounds.
            With ``cache_trunk`` it must also have ``trunk(obs) ->
            (B, *D)`` and ``heads(trunk_features) -> (logits, value)``.
        env: a vector environment with ProcgenVecEnv's interface (reset, step, get_state,
            set_state, close, num_envs).
        device: where the network and the buffer live.
        params: the parameters PPO trains (default: all of ``net``'s), one Adam group at
            ``config.learning_rate``; their gradient norm is clipped to ``max_grad_norm``.
        cache_trunk: store ``net.trunk(obs)`` while acting and run only ``net.heads`` in the PPO
            epochs. Valid only when no trunk parameter is trained (a frozen trunk): the epochs
            then skip the convolutions, the most expensive part of the network.
        keep_obs: also store the observations when ``cache_trunk`` (for hooks that need the
            frames of the rollout).
    """

    def __init__(
        self,
        config: PPOConfig,
        net: nn.Module,
        env: Any,
        *,
        device: torch.device | str,
        params: Iterable[nn.Parameter] | None = None,
        cache_trunk: bool = False,
        keep_obs: bool = False,
    ) -> None:
        self.config, self.net, self.env = config, net, env
        self.device = torch.device(device)
        self.params = list(net.parameters() if params is None else params)
        self.optimizer = torch.optim.Adam(self.params, lr=config.learning_rate, eps=1e-5)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.normalizer = RewardNormalizer(config.num_envs, config.gamma)
        self.cache_trunk, self.keep_obs = cache_trunk, keep_obs
        self.obs = env.reset()  # (N, H, W, C) uint8
        # A continuous policy has Gaussian ``log_std`` and ``action_bounds`` (ActorCritic).
        self.log_std = getattr(net, "log_std", None)
        self.action_bounds = getattr(net, "action_bounds", None)
        self.buffer = RolloutBuffer(
            config.num_steps, config.num_envs, device=self.device, inputs=self._input_spec(),
            action_dim=None if self.action_bounds is None else self.action_bounds.dim,
        )  # fmt: skip
        self.learn_keys = ("trunk",) if cache_trunk else ("obs",)
        self.update = 0
        self.recent_returns: deque[float] = deque(maxlen=100)

    @property
    def env_steps(self) -> int:
        """Environment steps (summed over envs) consumed so far."""
        return self.update * self.config.batch_size

    def _input_spec(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        obs = torch.from_numpy(self.obs[:1]).to(self.device)
        spec = {"obs": (tuple(obs.shape[1:]), torch.uint8)}
        if not self.cache_trunk:
            return spec
        with torch.no_grad(), self._autocast():
            trunk = self.net.trunk(obs)  # (1, *D), bf16 under autocast: stored as computed
        return {"trunk": (tuple(trunk.shape[1:]), trunk.dtype)} | (spec if self.keep_obs else {})

    def _autocast(self):
        return autocast(self.device, self.config.bf16)

    def _observe(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the buffer stores for one step of observations ``(N, H, W, C) uint8``."""
        if not self.cache_trunk:
            return {"obs": obs}
        return {"trunk": self.net.trunk(obs)} | ({"obs": obs} if self.keep_obs else {})

    def _forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache_trunk:
            return self.net.heads(inputs["trunk"])
        return self.net(inputs["obs"])

    def set_learning_rate(self, fraction: float) -> None:
        """Scale every group's base learning rate by ``fraction`` (linear annealing)."""
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * fraction

    def rollout(self) -> torch.Tensor:
        """Fill the buffer with ``num_steps`` steps of every env; return V(last obs) ``(N,)``."""
        cfg, buf, device = self.config, self.buffer, self.device
        with torch.no_grad(), self._autocast():
            for t in range(cfg.num_steps):
                inputs = self._observe(torch.from_numpy(self.obs).to(device))
                logits, value = self._forward(inputs)  # (N, A), (N,)
                if self.log_std is None:
                    actions, logprob = sample_actions(logits, self.generator)
                    step = self.env.step(actions.cpu().numpy())
                else:  # Gaussian: store the unclipped sample, send it clipped to the bounds
                    actions, logprob = sample_gaussian_actions(logits, self.log_std,
                                                               self.generator)  # fmt: skip
                    step = self.env.step(self.action_bounds.to_env(actions).cpu().numpy())
                for name, x in inputs.items():
                    buf.inputs[name][t] = x
                buf.actions[t], buf.logprobs[t], buf.values[t] = actions, logprob, value
                reward = (
                    self.normalizer(step.reward, step.done)
                    if cfg.normalize_rewards
                    else step.reward
                )
                buf.rewards[t] = torch.from_numpy(np.asarray(reward, dtype=np.float32)).to(device)
                buf.dones[t] = torch.from_numpy(step.done).to(device)
                self.recent_returns.extend(ep.episode_return for ep in step.episodes)
                self.obs = step.obs
            _, last_value = self._forward(self._observe(torch.from_numpy(self.obs).to(device)))
        return last_value.float()

    def learn(self, last_value: torch.Tensor) -> dict[str, float]:
        """GAE, then ``epochs`` x ``num_minibatches`` PPO steps; return mean loss statistics."""
        cfg, buf = self.config, self.buffer
        adv, ret = compute_gae(
            buf.rewards, buf.values, buf.dones, last_value, cfg.gamma, cfg.gae_lambda
        )
        totals: dict[str, float] = {}
        n = 0
        for _ in range(cfg.epochs):
            batches = buf.minibatches(adv, ret, cfg.num_minibatches, self.generator,
                                      self.learn_keys)  # fmt: skip
            for mb in batches:
                with self._autocast():
                    logits, value = self._forward(mb)
                loss, stats = ppo_loss(logits.float(), value.float(), mb["actions"],
                                       mb["logprobs"], mb["values"], mb["advantages"],
                                       mb["returns"], clip=cfg.clip, value_clip=cfg.value_clip,
                                       value_coef=cfg.value_coef,
                                       entropy_coef=cfg.entropy_coef,
                                       log_std=self.log_std)  # fmt: skip
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                n += 1
        return {f"train/{k}": v / n for k, v in totals.items()}

    def save(
        self,
        path: Path,
        kind: str,
        metrics: dict,
        *,
        meta: dict | None = None,
        tensors: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Checkpoint the run at ``path``: module ``policy`` (the network), optimizer
        ``optimizer``, and ``meta`` = ``{"kind": kind, "config", "update", "env_steps", ...}``
        updated with the given ``meta``; extra ``tensors`` are stored under their names."""
        env_state = self.env.get_state()
        stored = {"generator": self.generator.get_state().cpu(), "obs": torch.from_numpy(self.obs)}
        for i, blob in enumerate(env_state["envs"]):
            stored[f"env/{i}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        run_meta = {
            "kind": kind,
            "config": dataclasses.asdict(self.config),
            "update": self.update,
            "env_steps": self.env_steps,
            "generator_device": self.device.type,
            "env_returns": env_state["returns"].tolist(),
            "env_lengths": env_state["lengths"].tolist(),
            "normalizer": self.normalizer.state(),
            "recent_returns": list(self.recent_returns),
            "metrics": metrics,
        }
        save_checkpoint(
            path,
            modules={"policy": self.net},
            optimizers={"optimizer": self.optimizer},
            tensors=stored | (tensors or {}),
            meta=run_meta | (meta or {}),
        )

    def restore(self, path: Path) -> Checkpoint:
        """Load a checkpoint written by ``save`` (weights, optimizer, generator, environments)."""
        ckpt = load_checkpoint(
            path,
            modules={"policy": self.net},
            optimizers={"optimizer": self.optimizer},
            map_location=self.device,
        )
        meta = ckpt.meta
        self.update = meta["update"]
        self._restore_generator(ckpt.tensors["generator"].cpu(), meta.get("generator_device"))
        envs = [ckpt.tensors[f"env/{i}"].cpu().numpy().tobytes() for i in range(self.env.num_envs)]
        self.obs = self.env.set_state(
            {"envs": envs, "returns": meta["env_returns"], "lengths": meta["env_lengths"]}
        )
        self.normalizer.load_state(meta["normalizer"])
        self.recent_returns.extend(meta["recent_returns"])
        return ckpt

    def _restore_generator(self, state: torch.Tensor, saved_on: str | None) -> None:
        """Restore the sampling generator, or re-seed it when the checkpoint comes from another
        device type (a CUDA generator's state cannot drive a CPU one, and back).

        The re-seeded generator draws from ``(config.seed, update)``, so a resume on a new device
        is deterministic, but no longer bitwise equal to an uninterrupted run on the old one.
        """
        current = self.generator.get_state()
        moved = saved_on is not None and saved_on != self.device.type
        if not moved and state.numel() == current.numel():
            self.generator.set_state(state)
            return
        warnings.warn(
            f"checkpoint's sampling generator comes from {saved_on or 'another device'}, this run "
            f"is on {self.device.type}: re-seeded from (seed, update); the weights, optimizer "
            "and environments resume exactly, the action samples differ from an uninterrupted run",
            stacklevel=3,
        )
        self.generator.manual_seed(self.config.seed * 1_000_003 + self.update)


def check_run_dir(run_dir: Path, config: Any, resume: bool) -> bool:
    """Check ``run_dir`` before any work starts; return whether to restore its checkpoint.

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is False.
        ValueError: ``resume`` with a config that differs from the checkpoint's (fields named).
    """
    path = Path(run_dir) / CHECKPOINT
    if not checkpoint_exists(path):
        return False
    if not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it")
    check_resume_config(config, read_meta(path)["config"], path)
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
) -> dict:
    """Train until ``config.num_updates`` updates (or a stop); return the last update's metrics
    and ``stop_reason`` (None when all updates ran, else ``time budget``, ``SIGINT``, ...).

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (latest state, of
    ``kind``, with ``meta`` added), ``metrics.jsonl`` and ``tb/`` (TensorBoard), one record per
    update with x-axis environment steps: ``train/*`` losses, ``steps_per_second``,
    ``return/train_mean100`` and ``return/train_normalized`` (last 100 training episodes), and
    every ``eval_every`` updates, at the end, and once before the first update of a fresh run
    (a record at step 0 holding only these) ``return/eval_mean``, ``return/eval_ci95`` and
    ``return/eval_normalized`` from ``evaluate(net)`` (an ``EvalResult``).

    Args:
        restore: continue from ``run_dir``'s checkpoint (see ``check_run_dir``).
        hook: work after every update, saved and restored with the run.
        time_budget_s: stop (with a checkpoint) after this many seconds of wall clock.
        max_updates: stop (with a checkpoint) after this many updates in this call.
        best_dir: after every evaluation whose normalized return beats every earlier one of the
            run, write the network there as a weights-only checkpoint of ``kind`` (config,
            update, env_steps and the evaluation in its meta): the best checkpoint, as chosen
            on the evaluation levels (re-evaluate it with another seed before reporting it).
        Stops are run control only: a resumed run ends bitwise where an uninterrupted one does.

    Raises:
        ValueError: a negative ``time_budget_s``.
    """
    if time_budget_s is not None and not time_budget_s >= 0:
        raise ValueError(f"time_budget_s must be >= 0 seconds, got {time_budget_s}")
    cfg, run_dir = trainer.config, Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
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
        if best_dir is not None and math.isfinite(result.normalized):
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
            last = trainer.update == cfg.num_updates
            if evaluate is not None and _evaluation_due(cfg, trainer.update):
                metrics |= evaluated()
            logger.log(trainer.env_steps, metrics)
            bar.update(cfg.batch_size)
            bar.set_postfix(ret=f"{metrics.get('return/train_mean100', float('nan')):.2f}",
                            sps=f"{metrics['steps_per_second']:.0f}", refresh=False)  # fmt: skip
            if trainer.update % cfg.checkpoint_every == 0 or last:
                save()
        if stop.requested is not None:
            save()
            print(f"{stop.requested}: saved checkpoint at update {trainer.update} in {run_dir}")
    logger.close()
    trainer.env.close()
    metrics["stop_reason"] = stop.requested  # None: all updates done
    return metrics
