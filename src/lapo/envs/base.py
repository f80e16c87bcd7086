"""The vector-environment interface every lapo environment implements, and its action spaces.

An environment is ``num_envs`` copies of one task stepped together, with image observations
``(N, H, W, C) uint8`` (64 x 64 x 3 for every environment lapo makes, the dataset resolution)
and auto-reset: the observation returned with ``done`` is the first of the next episode.
Procgen (``lapo.envs.procgen``) and Gymnasium (``lapo.envs.gymnasium``) implement it;
``lapo.envs.make.make_env`` builds either from a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np


@dataclass(frozen=True)
class EpisodeStats:
    """An episode that ended during the last ``step``.

    Attributes:
        env_index: index of the environment in the vector, in ``[0, num_envs)``.
        episode_return: undiscounted sum of rewards of the episode.
        length: number of actions (environment steps) taken in the episode.
    """

    env_index: int
    episode_return: float
    length: int


class StepResult(NamedTuple):
    """What ``VecEnv.step`` returns.

    Attributes:
        obs: ``(N, 64, 64, 3) uint8``, next observations; for an env whose episode ended, the
            first observation of its next episode (auto-reset).
        reward: ``(N,) float32`` reward for the action just taken.
        done: ``(N,) bool``, True where the action ended the episode (terminated or cut by a
            time limit).
        episodes: stats of the episodes that ended on this step.
    """

    obs: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    episodes: list[EpisodeStats]


@dataclass(frozen=True)
class ActionSpec:
    """An environment's action space: discrete (``n`` actions) or continuous (a box).

    Attributes:
        n: number of discrete actions; None for a continuous space.
        low, high: per-dimension bounds of a continuous space (``A`` floats each, low < high);
            None for a discrete space.
        meanings: optional names of the discrete actions.

    Continuous policies in lapo act in unit space ``[-1, 1]^A`` (``to_unit``/``from_unit``
    map to and from the environment's units), so that regression losses and Gaussian policies
    see the same scale in every environment.

    Raises:
        ValueError: neither or both of ``n`` and the bounds, ``n < 1``, or bounds of different
            lengths, empty, not finite, or with low >= high.
    """

    n: int | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    meanings: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.n is None) == (self.low is None or self.high is None):
            raise ValueError("an action space is discrete (n) or continuous (low and high)")
        if self.n is not None and self.n < 1:
            raise ValueError(f"a discrete action space needs n >= 1, got {self.n}")
        if self.low is not None:
            low, high = np.asarray(self.low, float), np.asarray(self.high, float)
            if low.shape != high.shape or low.ndim != 1 or not low.size:
                raise ValueError(f"low and high must be equal-length 1-d, got {low} and {high}")
            if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
                raise ValueError(f"continuous bounds must be finite with low < high, got "
                                 f"{low.tolist()} and {high.tolist()}")  # fmt: skip

    @property
    def continuous(self) -> bool:
        """True for a continuous (box) space, i.e. ``n`` is None."""
        return self.n is None

    @property
    def dim(self) -> int:
        """Width of a policy's action output: ``n`` logits, or ``A`` action dimensions."""
        return len(self.low) if self.continuous else int(self.n)

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        """Environment units ``(..., A)`` -> unit space ``[-1, 1]`` (affine; ``float32``)."""
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return (2.0 * (np.asarray(actions, np.float32) - low) / (high - low) - 1.0).astype(
            np.float32
        )

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Unit space ``(..., A)`` -> environment units, clipped to the bounds (``float32``)."""
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        unit = np.clip(np.asarray(unit, np.float32), -1.0, 1.0)
        return (low + (unit + 1.0) * 0.5 * (high - low)).astype(np.float32)

    def manifest(self) -> dict[str, Any]:
        """The dataset manifest's ``action_space``: ``{"type": "discrete", "n", "meanings"}``
        or ``{"type": "box", "shape": [A], "low": [...], "high": [...]}``."""
        if self.continuous:
            return {"type": "box", "shape": [self.dim], "low": list(self.low),
                    "high": list(self.high)}  # fmt: skip
        out: dict[str, Any] = {"type": "discrete", "n": int(self.n)}
        if self.meanings is not None:
            out["meanings"] = list(self.meanings)
        return out

    @classmethod
    def from_manifest(cls, space: dict[str, Any]) -> ActionSpec:
        """Inverse of ``manifest``.

        Raises:
            ValueError: an unknown ``type``.
        """
        if space.get("type") == "box":
            return cls(low=tuple(map(float, space["low"])), high=tuple(map(float, space["high"])))
        if space.get("type") == "discrete":
            meanings = space.get("meanings")
            return cls(n=int(space["n"]), meanings=tuple(meanings) if meanings else None)
        raise ValueError(
            f"unknown action space type {space.get('type')!r}; expected discrete or box"
        )

    def check_actions(self, actions: np.ndarray, num_envs: int) -> np.ndarray:
        """Validate a batch of actions for ``num_envs`` environments and return it.

        Discrete: ``(N,)`` integers in ``[0, n)``. Continuous: ``(N, A)`` finite floats in
        environment units (clipped to the bounds by the environment, not here).

        Raises:
            ValueError: wrong shape, dtype or range.
        """
        actions = np.asarray(actions)
        if not self.continuous:
            if actions.shape != (num_envs,) or not np.issubdtype(actions.dtype, np.integer):
                raise ValueError(f"actions must be an integer array of shape ({num_envs},), "
                                 f"got {actions.dtype} {actions.shape}")  # fmt: skip
            if actions.size and (actions.min() < 0 or actions.max() >= self.n):
                raise ValueError(f"actions must be in [0, {self.n}), got {actions}")
            return actions
        if actions.shape != (num_envs, self.dim) or not np.issubdtype(actions.dtype, np.floating):
            raise ValueError(f"actions must be a float array of shape ({num_envs}, {self.dim}), "
                             f"got {actions.dtype} {actions.shape}")  # fmt: skip
        if not np.isfinite(actions).all():
            raise ValueError(f"actions must be finite, got {actions}")
        return actions


class VecEnv(Protocol):
    """``num_envs`` environments with image observations, stepped together (auto-reset).

    Attributes:
        num_envs: N.
        action_spec: the action space (``ActionSpec``).
    """

    num_envs: int
    action_spec: ActionSpec

    def reset(self) -> np.ndarray:
        """Current observations ``(N, 64, 64, 3) uint8`` (clears the return bookkeeping)."""
        ...

    def step(self, actions: np.ndarray) -> StepResult:
        """Act: ``(N,) int`` (discrete) or ``(N, A) float`` in environment units (continuous)."""
        ...

    def get_state(self) -> dict:
        """``{"envs": list of N bytes, "returns": (N,) float64, "lengths": (N,) int64}``."""
        ...

    def set_state(self, state: dict) -> np.ndarray:
        """Restore ``get_state``'s snapshot; return the observations."""
        ...

    def close(self) -> None:
        """Release the environments."""
        ...
