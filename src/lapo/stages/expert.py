"""Train a PPO expert on a Procgen game (``lapo expert train``), with exact resume.

One update: collect ``num_steps`` steps from ``num_envs`` environments with the current policy,
compute GAE advantages, then ``epochs`` passes of clipped-PPO minibatch updates (Cobbe et al.
2020 settings). Checkpoints hold the network, optimizer, sampling generator, reward-normalizer
statistics and the environments' own snapshots, so a resumed run continues bitwise.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lapo.checkpoint import checkpoint_exists, load_checkpoint, read_meta, save_checkpoint
from lapo.config import PPOConfig
from lapo.envs import NUM_ACTIONS, OBS_SHAPE, ProcgenVecEnv, normalized_return
from lapo.eval.rollouts import evaluate_policy
from lapo.models import ActorCritic, make_encoder
from lapo.rl import RewardNormalizer, RolloutBuffer, compute_gae, ppo_loss
from lapo.runtime import GracefulStop, RunLogger, check_resume_config

CHECKPOINT = "checkpoint"


def build_policy(config: PPOConfig) -> ActorCritic:
    """The actor-critic network a PPOConfig describes (channels_last memory format)."""
    encoder = make_encoder(config.encoder, multiplier=config.multiplier, features=config.features)
    return ActorCritic(encoder, NUM_ACTIONS).to(memory_format=torch.channels_last)


def sample_actions(logits: torch.Tensor, generator: torch.Generator):
    """Sample from ``softmax(logits)`` with an explicit generator; return actions, log-probs."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, A)
    actions = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)  # (N,)
    return actions, logp.gather(1, actions[:, None]).squeeze(1)


class _Run:
    """Everything an expert run mutates; saved to and restored from one checkpoint."""

    def __init__(
        self, config: PPOConfig, env: ProcgenVecEnv | None = None, device: str | None = None
    ) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.env = env or ProcgenVecEnv(
            config.env,
            config.num_envs,
            distribution_mode=config.distribution_mode,
            num_levels=config.num_levels,
            start_level=config.start_level,
            seed=config.seed,
        )
        self.net = build_policy(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate, eps=1e-5)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.normalizer = RewardNormalizer(config.num_envs, config.gamma)
        self.buffer = RolloutBuffer(config.num_steps, config.num_envs, OBS_SHAPE, self.device)
        self.obs = self.env.reset()
        self.update = 0
        self.recent_returns: deque[float] = deque(maxlen=100)

    def save(self, path: Path, metrics: dict) -> None:
        env_state = self.env.get_state()
        tensors = {"generator": self.generator.get_state().cpu(), "obs": torch.from_numpy(self.obs)}
        for i, blob in enumerate(env_state["envs"]):
            tensors[f"env/{i}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        meta = {
            "kind": "ppo-expert",
            "config": dataclasses.asdict(self.config),
            "update": self.update,
            "env_steps": self.update * self.config.batch_size,
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
            tensors=tensors,
            meta=meta,
        )

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(
            path,
            modules={"policy": self.net},
            optimizers={"optimizer": self.optimizer},
            map_location=self.device,
        )
        meta = ckpt.meta
        self.generator.set_state(ckpt.tensors["generator"].cpu())
        envs = [
            ckpt.tensors[f"env/{i}"].cpu().numpy().tobytes() for i in range(self.config.num_envs)
        ]
        self.obs = self.env.set_state(
            {"envs": envs, "returns": meta["env_returns"], "lengths": meta["env_lengths"]}
        )
        self.normalizer.load_state(meta["normalizer"])
        self.update = meta["update"]
        self.recent_returns.extend(meta["recent_returns"])


def _rollout(run: _Run) -> dict[str, float]:
    """Fill the buffer with ``num_steps`` steps of every env; return rollout stats."""
    cfg, buf, device = run.config, run.buffer, run.device
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
        for t in range(cfg.num_steps):
            obs = torch.from_numpy(run.obs).to(device)
            logits, value = run.net(obs)
            actions, logprob = sample_actions(logits, run.generator)
            step = run.env.step(actions.cpu().numpy())
            buf.obs[t], buf.actions[t], buf.logprobs[t], buf.values[t] = (
                obs,
                actions,
                logprob,
                value,
            )
            reward = (
                run.normalizer(step.reward, step.done) if cfg.normalize_rewards else step.reward
            )
            buf.rewards[t] = torch.from_numpy(np.asarray(reward, dtype=np.float32)).to(device)
            buf.dones[t] = torch.from_numpy(step.done).to(device)
            run.recent_returns.extend(ep.episode_return for ep in step.episodes)
            run.obs = step.obs
        _, last_value = run.net(torch.from_numpy(run.obs).to(device))
    return {"last_value": last_value.float()}


def _learn(run: _Run, last_value: torch.Tensor) -> dict[str, float]:
    """GAE, then ``epochs`` x ``num_minibatches`` PPO steps; return mean loss statistics."""
    cfg, buf = run.config, run.buffer
    adv, ret = compute_gae(
        buf.rewards, buf.values, buf.dones, last_value, cfg.gamma, cfg.gae_lambda
    )
    totals: dict[str, float] = {}
    n = 0
    for _ in range(cfg.epochs):
        for mb in buf.minibatches(adv, ret, cfg.num_minibatches, run.generator):
            with torch.autocast(run.device.type, torch.bfloat16, enabled=cfg.bf16):
                logits, value = run.net(mb["obs"])
            loss, stats = ppo_loss(logits.float(), value.float(), mb["actions"], mb["logprobs"],
                                   mb["values"], mb["advantages"], mb["returns"], clip=cfg.clip,
                                   value_clip=cfg.value_clip, value_coef=cfg.value_coef,
                                   entropy_coef=cfg.entropy_coef)  # fmt: skip
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                run.net.parameters(), cfg.max_grad_norm
            )
            run.optimizer.step()
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            n += 1
    return {f"train/{k}": v / n for k, v in totals.items()}


def evaluate_expert(net: ActorCritic, config: PPOConfig, episodes: int, seed: int = 1):
    """Held-out-level evaluation of a sampling policy; returns an ``EvalResult``."""
    policy = ExpertPolicy(net, bf16=config.bf16, seed=seed)
    return evaluate_policy(
        policy.act,
        config.env,
        episodes,
        start_level=config.eval_start_level,
        num_levels=config.eval_num_levels,
        distribution_mode=config.distribution_mode,
        seed=seed,
    )


def train_expert(
    config: PPOConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    env: ProcgenVecEnv | None = None,
    time_budget_s: float | None = None,
    max_updates: int | None = None,
    device: str | None = None,
) -> dict:
    """Train (or resume) a PPO expert in ``run_dir``; return the final metrics.

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (latest state),
    ``metrics.jsonl`` and ``tb/`` (TensorBoard). Logged x-axis: environment steps.

    Args:
        time_budget_s: stop (with a checkpoint) after this many seconds of wall clock; resume
            later with ``resume=True``. Run control only: results do not depend on it.
        max_updates: stop (with a checkpoint) after this many updates in this call.
        device: torch device; default ``cuda`` when available, else ``cpu``.
        env: an environment with ProcgenVecEnv's interface (reset, step, get_state, set_state,
            num_envs) to train in instead of the game ``config.env`` (e.g. a test environment).

    Raises:
        FileExistsError: ``run_dir`` has a checkpoint and ``resume`` is False.
        ValueError: ``resume`` with a config that differs from the checkpoint's (fields named).
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if checkpoint_exists(ckpt_path) and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it")
    run = _Run(config, env, device)
    if resume and checkpoint_exists(ckpt_path):
        check_resume_config(config, read_meta(ckpt_path)["config"], ckpt_path)
        run.restore(ckpt_path)
    logger = RunLogger(run_dir)
    metrics: dict = {}
    bar = tqdm(
        total=config.num_updates * config.batch_size,
        initial=run.update * config.batch_size,
        unit="step",
        unit_scale=True,
        disable=not progress,
        mininterval=1.0,
    )
    started, first_update = time.monotonic(), run.update
    with GracefulStop() as stop, bar:
        while run.update < config.num_updates and stop.requested is None:
            if time_budget_s is not None and time.monotonic() - started > time_budget_s:
                stop.requested = "time budget"
                break
            if max_updates is not None and run.update - first_update >= max_updates:
                stop.requested = "max_updates"
                break
            t0 = time.perf_counter()
            frac = 1.0 - run.update / config.num_updates
            for group in run.optimizer.param_groups:
                group["lr"] = config.learning_rate * (frac if config.anneal_lr else 1.0)
            rollout = _rollout(run)
            metrics = _learn(run, rollout["last_value"])
            run.update += 1
            steps = run.update * config.batch_size
            metrics["steps_per_second"] = config.batch_size / (time.perf_counter() - t0)
            if run.recent_returns:
                metrics["return/train_mean100"] = float(np.mean(run.recent_returns))
                metrics["return/train_normalized"] = float(
                    normalized_return(config.env, metrics["return/train_mean100"])
                )
            last = run.update == config.num_updates
            if config.eval_every and (run.update % config.eval_every == 0 or last):
                result = evaluate_expert(run.net, config, config.eval_episodes)
                metrics |= {
                    "return/eval_mean": result.mean,
                    "return/eval_ci95": result.ci95,
                    "return/eval_normalized": result.normalized,
                }
            logger.log(steps, metrics)
            bar.update(config.batch_size)
            bar.set_postfix(
                ret=f"{metrics.get('return/train_mean100', float('nan')):.2f}",
                sps=f"{metrics['steps_per_second']:.0f}",
                refresh=False,
            )
            if run.update % config.checkpoint_every == 0 or last:
                run.save(ckpt_path, metrics)
        if stop.requested is not None:
            run.save(ckpt_path, metrics)
            print(f"{stop.requested}: saved checkpoint at update {run.update} in {run_dir}")
    logger.close()
    run.env.close()
    return metrics


def load_expert(path: str | Path) -> tuple[ActorCritic, PPOConfig]:
    """Load an expert checkpoint written by ``train_expert``: the network (eval mode) and config.

    ``path`` may be the run directory or the checkpoint path inside it.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: not a PPO expert checkpoint or mismatched weights.
    """
    from lapo.checkpoint import CheckpointError

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    path = path.with_suffix("") if path.suffix == ".json" else path
    meta = read_meta(path)
    if meta.get("kind") != "ppo-expert":
        raise CheckpointError(
            f"{path}: expected a PPO expert checkpoint, found {meta.get('kind')!r}"
        )
    config = PPOConfig(**meta["config"])
    net = build_policy(config)
    load_checkpoint(path, modules={"policy": net})
    return net.eval(), config


class ExpertPolicy:
    """A trained expert as a ``Policy``: samples actions from its softmax (as data collection does).

    ``act(obs (N, 64, 64, 3) uint8) -> (N,) int64``.
    """

    def __init__(self, net: ActorCritic, bf16: bool = True, seed: int = 0) -> None:
        self.net, self.bf16 = net, bf16
        self.device = next(net.parameters()).device
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            logits, _ = self.net(torch.from_numpy(obs).to(self.device))
        return sample_actions(logits, self.generator)[0].cpu().numpy()
