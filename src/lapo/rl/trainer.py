"""One PPO run's state and its two steps (``PPOTrainer``): expert training, LAPO fine-tuning and
PPO from scratch all use it.

``PPOTrainer`` holds everything a run mutates (network, optimizer, sampling generator, reward
normalizer, environments, rollout buffer) and its two steps: ``rollout`` collects ``num_steps``
steps of every environment with the current policy, ``learn`` computes GAE advantages and makes
``epochs`` passes of clipped-PPO minibatch updates (Cobbe et al. 2020 settings). Its checkpoints
hold the network, optimizer, sampling generator, reward-normalizer statistics and the
environments' own snapshots, so that a resumed run continues bitwise. The loop around it
(annealing, logging, evaluation, stops) is ``lapo.rl.loop.run_ppo``.

The stages give the trainer its network, environments and trained parameters (``params``); the
trainer imports no stage, model or environment.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lapo.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lapo.config import PPOConfig
from lapo.device import autocast
from lapo.rl.buffer import RolloutBuffer
from lapo.rl.normalize import RewardNormalizer
from lapo.rl.ppo import compute_gae, ppo_loss, sample_actions, sample_gaussian_actions


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
