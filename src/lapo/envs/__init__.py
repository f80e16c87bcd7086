"""Procgen environments: the vectorized env, game names, action meanings, reference returns."""

from lapo.envs.games import (
    ACTION_MEANINGS,
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
)
from lapo.envs.procgen import EpisodeStats, ProcgenVecEnv, StepResult

__all__ = [
    "ACTION_MEANINGS",
    "DISTRIBUTION_MODES",
    "GAMES",
    "NOOP_ACTION",
    "NUM_ACTIONS",
    "OBS_SHAPE",
    "REFERENCE_RETURNS",
    "EpisodeStats",
    "ProcgenVecEnv",
    "ReferenceReturns",
    "StepResult",
    "check_distribution_mode",
    "check_game",
    "normalized_return",
]
