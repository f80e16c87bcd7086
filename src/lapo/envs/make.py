"""One resolver from an environment name to a vector environment: a Procgen game or any
registered Gymnasium id (``--env`` of every command)."""

from __future__ import annotations

from lapo.envs.base import ActionSpec, VecEnv
from lapo.envs.games import ACTION_MEANINGS, GAMES, NUM_ACTIONS
from lapo.envs.gymnasium import GymnasiumVecEnv, gymnasium_available, is_gymnasium_id
from lapo.envs.procgen import ProcgenVecEnv


def is_procgen(name: str) -> bool:
    """Whether ``name`` is one of the 16 Procgen games."""
    return name in GAMES


def check_env_name(name: str) -> str:
    """Return ``name`` if it is a Procgen game or a registered Gymnasium id.

    Raises:
        ValueError: neither; the message lists the Procgen games and says how to get Gymnasium.
    """
    if is_procgen(name) or is_gymnasium_id(name):
        return name
    hint = (
        ""
        if gymnasium_available()
        else ' (gymnasium is not installed: pip install "lapo[control]")'
    )
    raise ValueError(
        f"unknown environment {name!r}; expected a Procgen game ({', '.join(GAMES)}) or a "
        f"registered Gymnasium id such as Pendulum-v1{hint}"
    )


def make_env(
    name: str,
    num_envs: int,
    *,
    seed: int | None = None,
    distribution_mode: str = "easy",
    num_levels: int = 0,
    start_level: int = 0,
) -> VecEnv:
    """``num_envs`` environments of ``name`` with ``(N, 64, 64, 3) uint8`` observations.

    Procgen: ``ProcgenVecEnv`` with the given levels. Gymnasium: ``GymnasiumVecEnv`` seeded with
    ``seed + start_level`` (Gymnasium tasks have no levels; offsetting the seed keeps held-out
    evaluation episodes, which start at a large ``start_level``, apart from the training ones);
    ``distribution_mode`` and ``num_levels`` do not apply to them.

    Raises:
        ValueError: an unknown name (``check_env_name``) or a bad count.
        ImportError: the environment's package is missing.
    """
    check_env_name(name)
    if is_procgen(name):
        return ProcgenVecEnv(name, num_envs, distribution_mode=distribution_mode,
                             num_levels=num_levels, start_level=start_level, seed=seed)  # fmt: skip
    return GymnasiumVecEnv(name, num_envs, seed=((seed or 0) + start_level) % 2**31)


def make_env_from_config(config) -> VecEnv:
    """The environments a stage config describes: its ``env``, ``num_envs``,
    ``distribution_mode``, ``num_levels``, ``start_level`` and ``seed`` fields."""
    return make_env(config.env, config.num_envs, seed=config.seed,
                    distribution_mode=config.distribution_mode, num_levels=config.num_levels,
                    start_level=config.start_level)  # fmt: skip


def env_action_spec(name: str) -> ActionSpec:
    """The action space of ``name`` (a Gymnasium id is made once, without rendering).

    Raises:
        ValueError: unknown name.
    """
    check_env_name(name)
    if is_procgen(name):
        return ActionSpec(n=NUM_ACTIONS, meanings=ACTION_MEANINGS)
    from lapo.envs.gymnasium import _gymnasium, action_spec_of

    env = _gymnasium().make(name)
    try:
        return action_spec_of(env.action_space)
    finally:
        env.close()
