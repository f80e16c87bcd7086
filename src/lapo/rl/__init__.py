"""PPO building blocks as small pure functions, a rollout buffer and reward normalization."""

from lapo.rl.buffer import RolloutBuffer
from lapo.rl.normalize import RewardNormalizer, RunningMeanStd
from lapo.rl.ppo import (
    clipped_surrogate_loss,
    clipped_value_loss,
    compute_gae,
    normalize_advantages,
    ppo_loss,
)

__all__ = [
    "RewardNormalizer",
    "RolloutBuffer",
    "RunningMeanStd",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "compute_gae",
    "normalize_advantages",
    "ppo_loss",
]
