"""PPO building blocks as small pure functions, a rollout buffer, reward normalization, and the
PPO trainer and loop shared by every online stage (``lapo.rl.trainer``, ``lapo.rl.loop``)."""

from lapo.rl.buffer import RolloutBuffer
from lapo.rl.loop import UpdateHook, check_run_dir, run_ppo
from lapo.rl.normalize import RewardNormalizer, RunningMeanStd
from lapo.rl.ppo import (
    clipped_surrogate_loss,
    clipped_value_loss,
    compute_gae,
    normalize_advantages,
    ppo_loss,
    sample_actions,
)
from lapo.rl.trainer import PPOTrainer

__all__ = [
    "PPOTrainer",
    "RewardNormalizer",
    "RolloutBuffer",
    "RunningMeanStd",
    "UpdateHook",
    "check_run_dir",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "compute_gae",
    "normalize_advantages",
    "ppo_loss",
    "run_ppo",
    "sample_actions",
]
