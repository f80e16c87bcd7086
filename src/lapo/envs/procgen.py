"""Vectorized Procgen environments over gym3's ``ProcgenGym3Env`` (procgen-mirror).

gym3 auto-resets: after ``act``, ``observe`` returns the reward for that action, the next
observation and ``first``, which is True when that observation starts a new episode, i.e. when the
action ended the previous one. ``ProcgenVecEnv.step`` turns this into the familiar
``(obs, reward, done)`` plus the return and length of every episode that just ended.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import numpy as np

from lapo.envs.base import ActionSpec, EpisodeStats, StepResult
from lapo.envs.games import ACTION_MEANINGS, NUM_ACTIONS, check_distribution_mode, check_game

__all__ = ["EpisodeStats", "ProcgenVecEnv", "StepResult"]


def _load_procgen_gym3_env() -> type:
    """Return procgen's ``ProcgenGym3Env`` class without importing the unmaintained ``gym``.

    ``procgen/__init__.py`` registers gym environments and so imports ``gym``, which we do not
    install (it pins numpy<2 and is unmaintained). ``procgen.env`` itself needs only gym3, so we
    register the ``procgen`` package object without running its ``__init__`` and import the
    submodule. This changes no behaviour of procgen; it only skips the gym registration.

    Raises:
        ImportError: procgen-mirror or gym3 is missing, with the command that installs them.
    """
    if "procgen.env" in sys.modules:
        return sys.modules["procgen.env"].ProcgenGym3Env
    spec = importlib.util.find_spec("procgen")
    if spec is None or importlib.util.find_spec("gym3") is None:
        raise ImportError(
            "Procgen is not installed. Install it with: "
            "pip install --no-deps procgen-mirror==0.10.7 gym3==0.3.3 (scripts/setup.sh does this)"
        )
    if "procgen" not in sys.modules:
        package = importlib.util.module_from_spec(spec)
        sys.modules["procgen"] = package
    return importlib.import_module("procgen.env").ProcgenGym3Env


class ProcgenVecEnv:
    """``num_envs`` Procgen games stepped together in one process (gym3 threads).

    Args:
        game: one of the 16 Procgen games (``lapo.envs.GAMES``).
        num_envs: number of parallel environments N.
        distribution_mode: ``easy`` (the paper's), ``hard``, ``extreme``, ``memory`` or
            ``exploration``.
        num_levels: number of distinct levels; 0 means all levels (the paper's setting).
        start_level: first level seed; levels are ``[start_level, start_level + num_levels)``.
        seed: seed of the level sampler, for reproducible rollouts; None draws one.
        num_threads: gym3 worker threads; 0 steps in the calling thread.

    Raises:
        ValueError: unknown game or distribution mode, or a negative/zero count; the message
            lists the valid values.
        ImportError: procgen-mirror is not installed.
    """

    num_actions: int = NUM_ACTIONS
    action_spec: ActionSpec = ActionSpec(n=NUM_ACTIONS, meanings=ACTION_MEANINGS)

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        distribution_mode: str = "easy",
        num_levels: int = 0,
        start_level: int = 0,
        seed: int | None = None,
        num_threads: int = 4,
    ) -> None:
        check_game(game)
        check_distribution_mode(game, distribution_mode)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_levels < 0 or start_level < 0:
            raise ValueError(
                f"num_levels and start_level must be >= 0, got {num_levels} and {start_level}"
            )
        if seed is not None and not 0 <= seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {seed}")
        env_cls = _load_procgen_gym3_env()
        self.game = game
        self.num_envs = num_envs
        self.distribution_mode = distribution_mode
        self.num_levels = num_levels
        self.start_level = start_level
        self._env = env_cls(
            num=num_envs,
            env_name=game,
            distribution_mode=distribution_mode,
            num_levels=num_levels,
            start_level=start_level,
            rand_seed=seed,
            num_threads=num_threads,
        )
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    @classmethod
    def from_config(cls, config: Any) -> ProcgenVecEnv:
        """The environments a stage config describes: its ``env``, ``num_envs``,
        ``distribution_mode``, ``num_levels``, ``start_level`` and ``seed`` fields
        (``CollectConfig``, ``PPOConfig`` and ``FinetuneConfig`` have them all)."""
        return cls(
            config.env,
            config.num_envs,
            distribution_mode=config.distribution_mode,
            num_levels=config.num_levels,
            start_level=config.start_level,
            seed=config.seed,
        )

    def reset(self) -> np.ndarray:
        """Return the current observations ``(N, 64, 64, 3) uint8``.

        gym3 environments start in a fresh episode and never need an explicit reset; this
        only clears the return bookkeeping and reads the observations.
        """
        self._returns[:] = 0.0
        self._lengths[:] = 0
        _, obs, _ = self._env.observe()
        return obs["rgb"].copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Act in every environment.

        Args:
            actions: ``(N,)`` integer actions in ``[0, 15)``.

        Raises:
            ValueError: wrong shape or an action out of range.
        """
        actions = self.action_spec.check_actions(actions, self.num_envs)
        self._env.act(actions.astype(np.int32))
        reward, obs, first = self._env.observe()
        reward = reward.astype(np.float32)
        done = first.astype(bool)
        self._returns += reward
        self._lengths += 1
        episodes = [
            EpisodeStats(int(i), float(self._returns[i]), int(self._lengths[i]))
            for i in np.flatnonzero(done)
        ]
        self._returns[done] = 0.0
        self._lengths[done] = 0
        return StepResult(obs["rgb"].copy(), reward, done, episodes)

    def get_state(self) -> dict:
        """Snapshot of every environment (game state, level sampler) and the return bookkeeping.

        Returns:
            ``{"envs": list of N bytes (procgen's serialized states, ~20 KB each),
            "returns": (N,) float64, "lengths": (N,) int64}``; ``set_state`` restores it so
            that the same actions give bitwise the same observations and rewards.
        """
        return {
            "envs": self._env.get_state(),
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
        }

    def set_state(self, state: dict) -> np.ndarray:
        """Restore a ``get_state`` snapshot; return the current observations ``(N, 64, 64, 3)``.

        Raises:
            ValueError: the snapshot is for a different number of environments.
        """
        if len(state["envs"]) != self.num_envs:
            raise ValueError(
                f"state holds {len(state['envs'])} environments, this vector has {self.num_envs}"
            )
        self._env.set_state(list(state["envs"]))
        self._returns = np.asarray(state["returns"], dtype=np.float64).copy()
        self._lengths = np.asarray(state["lengths"], dtype=np.int64).copy()
        _, obs, _ = self._env.observe()
        return obs["rgb"].copy()

    def close(self) -> None:
        """Release the environments."""
        self._env = None
