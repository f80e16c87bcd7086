"""Environments: the vector-environment interface, Procgen, any Gymnasium id, the resolver
``make_env``, action spaces, reference returns and normalized return."""

from lapo.envs.base import ActionSpec, EpisodeStats, StepResult, VecEnv
from lapo.envs.games import (
    ACTION_MEANINGS,
    CONTROL_REFERENCE_RETURNS,
    DISTRIBUTION_MODES,
    GAMES,
    NOOP_ACTION,
    NUM_ACTIONS,
    OBS_SHAPE,
    REFERENCE_RETURNS,
    ReferenceReturns,
    check_distribution_mode,
    check_game,
    normalized_return,
    reference_returns,
)
from lapo.envs.gymnasium import GymnasiumVecEnv
from lapo.envs.make import (
    check_env_name,
    env_action_spec,
    is_procgen,
    make_env,
    make_env_from_config,
)
from lapo.envs.procgen import ProcgenVecEnv

__all__ = [
    "ACTION_MEANINGS",
    "CONTROL_REFERENCE_RETURNS",
    "DISTRIBUTION_MODES",
    "GAMES",
    "NOOP_ACTION",
    "NUM_ACTIONS",
    "OBS_SHAPE",
    "REFERENCE_RETURNS",
    "ActionSpec",
    "EpisodeStats",
    "GymnasiumVecEnv",
    "ProcgenVecEnv",
    "ReferenceReturns",
    "StepResult",
    "VecEnv",
    "check_distribution_mode",
    "check_env_name",
    "check_game",
    "env_action_spec",
    "is_procgen",
    "make_env",
    "make_env_from_config",
    "normalized_return",
    "reference_returns",
]
