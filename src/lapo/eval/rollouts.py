"""Roll a policy out in Procgen and summarize its returns (mean, 95% CI, normalized return)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lapo.envs import ProcgenVecEnv, normalized_return


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of a normal-approximation 95% confidence interval (1.96 * SEM)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


@dataclass(frozen=True)
class EvalResult:
    """Returns of ``episodes`` complete episodes.

    Attributes:
        game: Procgen game.
        returns: ``(episodes,) float64`` episode returns.
        lengths: ``(episodes,) int64`` episode lengths in environment steps.
        start_level, num_levels: the levels evaluated on (num_levels=0: all levels).
    """

    game: str
    returns: np.ndarray
    lengths: np.ndarray
    start_level: int
    num_levels: int

    @property
    def mean(self) -> float:
        return mean_ci95(self.returns)[0]

    @property
    def ci95(self) -> float:
        return mean_ci95(self.returns)[1]

    @property
    def normalized(self) -> float:
        """Mean normalized return (0 = random policy, 1 = the paper's expert)."""
        return float(normalized_return(self.game, self.mean))

    @property
    def normalized_ci95(self) -> float:
        return float(normalized_return(self.game, self.mean + self.ci95) - self.normalized)

    def summary(self) -> str:
        return (
            f"{self.game}: return {self.mean:.2f} +- {self.ci95:.2f} (95% CI) over "
            f"{len(self.returns)} episodes, normalized {self.normalized:.3f} +- "
            f"{self.normalized_ci95:.3f}"
        )


def evaluate_policy(
    act: Callable[[np.ndarray], np.ndarray],
    game: str,
    episodes: int,
    *,
    num_envs: int = 32,
    start_level: int = 0,
    num_levels: int = 0,
    distribution_mode: str = "easy",
    seed: int = 0,
    max_steps: int = 100_000,
) -> EvalResult:
    """Run ``act`` until ``episodes`` episodes have finished; return their returns.

    To avoid the bias towards short episodes, only the first ``ceil(episodes / num_envs)``
    episodes of each environment are counted, and exactly ``episodes`` of them in env order.

    Args:
        act: ``(N, 64, 64, 3) uint8 -> (N,) int`` actions (e.g. a greedy or sampling policy).
        game: Procgen game.
        episodes: number of complete episodes to collect.
        start_level, num_levels: evaluation levels; use levels not seen in training.
        seed: environment seed (fixes the level sequence).
        max_steps: safety bound on vector steps.

    Raises:
        RuntimeError: ``max_steps`` vector steps passed before enough episodes finished.
    """
    num_envs = min(num_envs, episodes)
    per_env = -(-episodes // num_envs)
    env = ProcgenVecEnv(
        game,
        num_envs,
        distribution_mode=distribution_mode,
        start_level=start_level,
        num_levels=num_levels,
        seed=seed,
    )
    obs = env.reset()
    done_per_env = [[] for _ in range(num_envs)]
    for _ in range(max_steps):
        step = env.step(np.asarray(act(obs)))
        obs = step.obs
        for ep in step.episodes:
            if len(done_per_env[ep.env_index]) < per_env:
                done_per_env[ep.env_index].append((ep.episode_return, ep.length))
        if all(len(d) >= per_env for d in done_per_env):
            break
    else:
        raise RuntimeError(f"evaluation did not finish {episodes} episodes in {max_steps} steps")
    env.close()
    flat = [ep for rank in range(per_env) for d in done_per_env for ep in d[rank : rank + 1]]
    flat = flat[:episodes]
    return EvalResult(
        game,
        np.array([r for r, _ in flat]),
        np.array([n for _, n in flat]),
        start_level,
        num_levels,
    )
