"""Any Gymnasium environment as a lapo vector environment, observed through its pixels.

``GymnasiumVecEnv`` wraps a ``gymnasium.vector.SyncVectorEnv`` of ``num_envs`` copies of one
registered id made with ``render_mode="rgb_array"``. The observation lapo sees is the rendered
frame, not the environment's own observation, resized to 64 x 64 (PIL box filter: the mean of the
source pixels each target pixel covers) so that every environment matches the dataset
resolution of Procgen. Discrete (``Discrete``) and continuous (1-d ``Box``) action spaces are
supported. Episodes auto-reset in the same step (``AutoresetMode.SAME_STEP``), as gym3 does:
the observation returned with ``done`` is the first frame of the next episode. ``done`` is
``terminated or truncated``; lapo's PPO does not bootstrap across a time-limit cut (as Procgen,
whose episodes also end at a time limit).

Gymnasium is an optional dependency (``pip install "lapo[control]"``); nothing is imported until
an environment is made.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from lapo.envs.base import ActionSpec, EpisodeStats, StepResult

#: The frame size of every observation (the dataset resolution), (H, W).
FRAME_SIZE: tuple[int, int] = (64, 64)

#: Attributes through which a Gymnasium renderer draws the last action into the frame; they are
#: set to None while rendering (and restored), so that frames show the state and not the action:
#: Pendulum-v1 draws its torque as an arrow sized and turned by ``last_u``, which handed the IDM
#: the action it is meant to infer (until 2026-12-05). It is used for rendering only.
ACTION_DRAWN: tuple[str, ...] = ("last_u",)
#: The registered ids whose renderer draws the action (through ``ACTION_DRAWN``): their
#: recordings made before the action was hidden differ (``lapo run`` records the setting).
ACTION_DRAWING_IDS: tuple[str, ...] = ("Pendulum-v1",)


def gymnasium_available() -> bool:
    """Whether gymnasium is importable (the renderers some ids need are checked when made)."""
    return importlib.util.find_spec("gymnasium") is not None


def _gymnasium():
    if not gymnasium_available():
        raise ImportError(
            'Gymnasium is not installed. Install it with: pip install "lapo[control]" '
            "(gymnasium[classic-control]; scripts/setup.sh does this)"
        )
    import gymnasium

    return gymnasium


def is_gymnasium_id(name: str) -> bool:
    """Whether ``name`` is a registered Gymnasium id (False when gymnasium is missing)."""
    if not gymnasium_available():
        return False
    return name in _gymnasium().registry


def gymnasium_ids() -> list[str]:
    """The registered Gymnasium ids (empty when gymnasium is missing)."""
    if not gymnasium_available():
        return []
    return sorted(_gymnasium().registry)


def action_spec_of(space) -> ActionSpec:
    """The ``ActionSpec`` of a single Gymnasium action space.

    Raises:
        ValueError: a space other than ``Discrete`` or a 1-d ``Box`` with finite bounds.
    """
    spaces = _gymnasium().spaces
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"discrete action spaces must start at 0, got start={space.start}")
        return ActionSpec(n=int(space.n))
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return ActionSpec(low=tuple(map(float, space.low)), high=tuple(map(float, space.high)))
    raise ValueError(f"unsupported action space {space}; expected Discrete or a 1-d Box")


def resize_frame(frame: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """``(H0, W0, 3) uint8`` rendered frame -> ``(H, W, 3) uint8`` by area averaging (PIL box)."""
    from PIL import Image

    if frame.shape[:2] == size:
        return np.ascontiguousarray(frame, dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BOX), dtype=np.uint8)


class GymnasiumVecEnv:
    """``num_envs`` copies of a Gymnasium id, observed as ``(N, 64, 64, 3) uint8`` rendered frames.

    Args:
        env_id: a registered Gymnasium id, e.g. ``Pendulum-v1``.
        num_envs: N.
        seed: seed of the first reset (env i gets ``seed + i``); None draws one.

    Continuous actions are given in the environment's units and clipped to the bounds of its
    ``Box`` before they are sent (policies sample unbounded and the environment clips).

    Attribute ``states``: the environments' own (state) observations ``(N, *shape)`` that go
    with the current frames, for scripted experts (``lapo.envs.scripted``); never seen by
    lapo's learners.

    ``get_state`` cannot snapshot a Gymnasium environment without pickling it, so it returns
    empty per-environment states and ``set_state`` starts fresh episodes (seeded from the
    snapshot's ``reset_count``): a resumed run continues, but not bitwise as Procgen's does.

    Raises:
        ValueError: unknown id or unsupported action space; ``num_envs < 1``.
        ImportError: gymnasium (or the id's renderer, e.g. pygame) is missing.
    """

    def __init__(self, env_id: str, num_envs: int, *, seed: int | None = None) -> None:
        gym = _gymnasium()
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if env_id not in gym.registry:
            raise ValueError(f"unknown Gymnasium id {env_id!r}")
        if seed is not None and not 0 <= seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {seed}")
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        # rgb_array rendering draws off-screen; without a display SDL would complain on stderr
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

        def make():
            return gym.make(env_id, render_mode="rgb_array")

        self.game = env_id
        self.num_envs = num_envs
        self._env = SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        self.action_spec = action_spec_of(self._env.single_action_space)
        self._seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
        self._reset_count = 0
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._obs = self._reset_envs()

    @classmethod
    def from_config(cls, config) -> GymnasiumVecEnv:
        """The environments of a stage config's ``env``, ``num_envs`` and ``seed``."""
        return cls(config.env, config.num_envs, seed=config.seed)

    def _frames(self) -> np.ndarray:
        """``(N, 64, 64, 3) uint8``: every environment rendered with its drawn action hidden
        (``ACTION_DRAWN``), resized."""
        frames = []
        for env in self._env.envs:
            base = env.unwrapped
            saved = {name: getattr(base, name) for name in ACTION_DRAWN if hasattr(base, name)}
            for name in saved:
                setattr(base, name, None)
            try:
                frames.append(resize_frame(env.render()))
            finally:
                for name, value in saved.items():
                    setattr(base, name, value)
        return np.stack(frames)

    def _reset_envs(self) -> np.ndarray:
        seed = (self._seed + self._reset_count * self.num_envs) % 2**31
        self.states, _ = self._env.reset(seed=[(seed + i) % 2**31 for i in range(self.num_envs)])
        self._reset_count += 1
        return self._frames()

    def reset(self) -> np.ndarray:
        """Current observations ``(N, 64, 64, 3) uint8``; clears the return bookkeeping."""
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Act in every environment.

        Args:
            actions: ``(N,)`` integers in ``[0, n)`` (discrete) or ``(N, A)`` floats in the
                environment's units (continuous; clipped to the bounds here).

        Raises:
            ValueError: wrong shape, dtype or range.
        """
        spec = self.action_spec
        actions = spec.check_actions(actions, self.num_envs)
        if spec.continuous:
            low, high = np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32)
            actions = np.clip(actions.astype(np.float32), low, high)
        self.states, reward, terminated, truncated, _ = self._env.step(actions)
        reward = np.asarray(reward, dtype=np.float32)
        done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        self._obs = self._frames()
        self._returns += reward
        self._lengths += 1
        episodes = [
            EpisodeStats(int(i), float(self._returns[i]), int(self._lengths[i]))
            for i in np.flatnonzero(done)
        ]
        self._returns[done] = 0.0
        self._lengths[done] = 0
        return StepResult(self._obs.copy(), reward, done, episodes)

    def get_state(self) -> dict:
        """``{"envs": N placeholder bytes, "returns", "lengths", "reset_count"}`` (see above)."""
        return {
            "envs": [b"\0"] * self.num_envs,  # torch.frombuffer refuses empty buffers
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
            "reset_count": self._reset_count,
        }

    def set_state(self, state: dict) -> np.ndarray:
        """Start fresh episodes (a Gymnasium state cannot be restored); return observations.

        Raises:
            ValueError: the snapshot is for a different number of environments.
        """
        if len(state["envs"]) != self.num_envs:
            raise ValueError(
                f"state holds {len(state['envs'])} environments, this vector has {self.num_envs}"
            )
        self._reset_count = int(state.get("reset_count", self._reset_count))
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._obs = self._reset_envs()
        return self._obs.copy()

    def close(self) -> None:
        """Release the environments."""
        if self._env is not None:
            self._env.close()
        self._env = None
