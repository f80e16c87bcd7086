"""Train a PPO expert on a Procgen game (``lapo expert train``), with exact resume.

The PPO loop itself (rollout, GAE, clipped-PPO epochs with Cobbe et al. 2020 settings, bitwise
resumable checkpoints) is ``lapo.rl.trainer``, shared with online fine-tuning
(``lapo.stages.finetune``); this module chooses the network and the environments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lapo.checkpoint import checkpoint_exists, load_checkpoint, read_meta, save_checkpoint
from lapo.config import PPOConfig, check_temperature
from lapo.envs import NUM_ACTIONS, ProcgenVecEnv
from lapo.eval.rollouts import evaluate_policy
from lapo.models import ActorCritic, make_encoder
from lapo.precision import autocast
from lapo.rl.trainer import CHECKPOINT, PPOTrainer, check_run_dir, run_ppo, sample_actions

__all__ = [
    "CHECKPOINT",
    "ExpertPolicy",
    "build_policy",
    "evaluate_expert",
    "load_expert",
    "make_expert_trainer",
    "sample_actions",
    "train_expert",
]


def build_policy(config: PPOConfig) -> ActorCritic:
    """The actor-critic network a PPOConfig describes (channels_last memory format)."""
    encoder = make_encoder(config.encoder, multiplier=config.multiplier, features=config.features)
    return ActorCritic(encoder, NUM_ACTIONS).to(memory_format=torch.channels_last)


def make_expert_trainer(
    config: PPOConfig, env: ProcgenVecEnv | None = None, device: str | None = None
) -> PPOTrainer:
    """A fresh expert run: the network of ``config`` (seeded) in ``config.num_envs`` envs.

    Args:
        env: an environment with ProcgenVecEnv's interface to train in instead of the game
            ``config.env`` (e.g. a test environment).
        device: torch device; default ``cuda`` when available, else ``cpu``.
    """
    torch.manual_seed(config.seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    env = env or ProcgenVecEnv(
        config.env,
        config.num_envs,
        distribution_mode=config.distribution_mode,
        num_levels=config.num_levels,
        start_level=config.start_level,
        seed=config.seed,
    )
    return PPOTrainer(config, build_policy(config).to(device), env, device=device)


def evaluate_expert(net: nn.Module, config: PPOConfig, episodes: int, seed: int = 1):
    """Held-out-level evaluation of a sampling policy; returns an ``EvalResult``.

    Works for any actor-critic ``net(obs) -> (logits, value)`` trained with a ``PPOConfig``
    (experts, fine-tuned latent policies, PPO from scratch): levels
    ``[eval_start_level, eval_start_level + eval_num_levels)`` of ``config.env``.
    """
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

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (latest state, kind
    ``ppo-expert``), ``metrics.jsonl`` and ``tb/`` (TensorBoard). Logged x-axis: environment
    steps (``lapo.rl.trainer.run_ppo`` lists the metrics).

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
    restore = check_run_dir(Path(run_dir), config, resume)
    trainer = make_expert_trainer(config, env, device)
    return run_ppo(
        trainer,
        Path(run_dir),
        kind="ppo-expert",
        restore=restore,
        evaluate=lambda net: evaluate_expert(net, config, config.eval_episodes),
        progress=progress,
        time_budget_s=time_budget_s,
        max_updates=max_updates,
    )


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

    ``act(obs (N, 64, 64, 3) uint8) -> (N,) int64``; with ``temperature`` T the actions come from
    ``softmax(logits / T)`` (1: as trained; below 1 sharper, toward the argmax).

    Raises:
        ValueError: ``temperature`` is not a finite number > 0.
    """

    def __init__(
        self, net: ActorCritic, bf16: bool = True, seed: int = 0, temperature: float = 1.0
    ) -> None:
        check_temperature(temperature)
        self.net, self.bf16, self.temperature = net, bf16, temperature
        self.device = next(net.parameters()).device
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad(), autocast(self.device, self.bf16):
            logits, _ = self.net(torch.from_numpy(obs).to(self.device))
        return sample_actions(logits.float() / self.temperature, self.generator)[0].cpu().numpy()


def export_expert(run: str | Path, out: str | Path, evaluation: dict | None = None) -> Path:
    """Write a weights-only copy of an expert (for shipping in ``lapo/experts/<game>/``).

    The copy keeps kind ``ppo-expert``, the config, the training step count and metrics, and
    ``evaluation`` (e.g. ``lapo.stages.evaluate.result_dict`` of a held-out evaluation); it drops
    the optimizer, sampling and environment state, so it loads with ``load_expert`` but cannot be
    resumed.

    Raises:
        FileExistsError: ``out`` already holds a checkpoint.
        lapo.checkpoint.CheckpointError: ``run`` is not a PPO expert.
    """
    out = Path(out)
    if checkpoint_exists(out / CHECKPOINT):
        raise FileExistsError(f"{out} already holds a checkpoint; remove it first")
    net, config = load_expert(run)
    src = Path(run) / CHECKPOINT if Path(run).is_dir() else Path(run).with_suffix("")
    meta = read_meta(src)
    keep = {k: meta[k] for k in ("config", "update", "env_steps", "metrics") if k in meta}
    save_checkpoint(
        out / CHECKPOINT,
        modules={"policy": net},
        meta={"kind": "ppo-expert", **keep, "evaluation": evaluation},
    )
    return out
