"""Reward normalization by the running standard deviation of discounted returns.

As in Cobbe et al. 2020 (OpenAI baselines' VecNormalize with ``ob=False``): rewards are divided by
the standard deviation of a running discounted return, not centred, then clipped. This is part of
the method's recipe, so it is written here rather than taken from gym's wrappers.
"""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Running mean and variance over batches (Chan et al. parallel update), float64."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: np.ndarray) -> None:
        """Merge the mean and population variance of all elements of ``x`` (any shape) into the
        running statistics."""
        batch_mean, batch_var, n = float(np.mean(x)), float(np.var(x)), x.size
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total

    def state(self) -> dict[str, float]:
        """``{"mean", "var", "count"}`` floats (JSON-able, for checkpoints)."""
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state(self, state: dict[str, float]) -> None:
        """Restore ``state()``."""
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


class RewardNormalizer:
    """Scale rewards by the running std of the discounted return; clip to ``[-clip, clip]``.

    Args:
        num_envs: N, the number of parallel environments.
        gamma: discount of the tracked return (the PPO discount).
        clip: absolute bound of the normalized reward.

    ``__call__(rewards (N,), dones (N,) bool) -> (N,) float32`` normalized rewards.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.stats = RunningMeanStd()

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(self.returns)
        self.returns[dones] = 0.0
        scaled = rewards / np.sqrt(self.stats.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state(self) -> dict:
        """JSON-able state for checkpoints."""
        return {"returns": self.returns.tolist(), "stats": self.stats.state()}

    def load_state(self, state: dict) -> None:
        """Restore ``state()``: the running discounted returns ``(N,)`` and their statistics."""
        self.returns = np.asarray(state["returns"], dtype=np.float64)
        self.stats.load_state(state["stats"])
