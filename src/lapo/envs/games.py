"""Procgen game facts: the 16 game names, the 15 action meanings and reference returns.

Reference returns are the paper's (Schmidt & Jiang 2024, ../shared/reference/PAPER.md): the mean
episodic return of a uniform random policy and of the data-generating PPO expert, in Procgen's
``easy`` distribution mode. They define the normalized return used throughout the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

GAMES: tuple[str, ...] = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip

#: Meaning of each of Procgen's 15 discrete actions, by index (the paper's Table / PAPER.md).
ACTION_MEANINGS: tuple[str, ...] = (
    "LEFT-DOWN", "LEFT", "LEFT-UP", "DOWN", "NOOP", "UP", "RIGHT-DOWN", "RIGHT", "RIGHT-UP",
    "D", "A", "W", "S", "Q", "E",
)  # fmt: skip
NUM_ACTIONS: int = len(ACTION_MEANINGS)
NOOP_ACTION: int = ACTION_MEANINGS.index("NOOP")
#: Procgen observation shape (H, W, C) uint8.
OBS_SHAPE: tuple[int, int, int] = (64, 64, 3)

DISTRIBUTION_MODES: tuple[str, ...] = ("easy", "hard", "extreme", "memory", "exploration")
#: Procgen defines the ``exploration`` mode only for these games.
EXPLORATION_GAMES: tuple[str, ...] = (
    "caveflyer", "climber", "coinrun", "heist", "jumper", "leaper", "maze", "ninja",
)  # fmt: skip


@dataclass(frozen=True)
class ReferenceReturns:
    """Mean episodic returns (Procgen ``easy``) that bound the normalized return.

    Attributes:
        random: return of a uniform random policy.
        expert: return of the paper's data-generating PPO expert (50M frames).
    """

    random: float
    expert: float


REFERENCE_RETURNS: dict[str, ReferenceReturns] = {
    "bigfish": ReferenceReturns(0.874, 36.336),
    "bossfight": ReferenceReturns(0.046, 11.634),
    "caveflyer": ReferenceReturns(2.597, 9.184),
    "chaser": ReferenceReturns(0.663, 9.956),
    "climber": ReferenceReturns(2.224, 10.234),
    "coinrun": ReferenceReturns(2.705, 9.933),
    "dodgeball": ReferenceReturns(0.613, 13.487),
    "fruitbot": ReferenceReturns(-2.533, 29.925),
    "heist": ReferenceReturns(3.076, 9.685),
    "jumper": ReferenceReturns(3.411, 8.460),
    "leaper": ReferenceReturns(2.511, 7.408),
    "maze": ReferenceReturns(4.273, 9.969),
    "miner": ReferenceReturns(1.251, 11.893),
    "ninja": ReferenceReturns(2.560, 9.475),
    "plunder": ReferenceReturns(4.321, 11.461),
    "starpilot": ReferenceReturns(1.525, 66.986),
}


#: Continuous-control reference returns, measured here (2026-12-04, AMD EPYC, 2 cores, shared with
#: other jobs) by ``benchmarks/control_references.py`` (docs/results/continuous.md): ``random``
#: is the mean return of 100 episodes of uniform random actions in the bounds (seeds
#: 10000-10099; 95% CI +-59.2 on Pendulum, +-2.1 on MountainCar), ``expert`` that of 100
#: episodes of the scripted state-feedback controller ``lapo.envs.scripted``, the data-generating
#: expert of these tasks (seeds 20000-20099; CI +-31.5 and +-0.03). The paper (appendix A.3)
#: gives no reference returns for its continuous-control tasks.
CONTROL_REFERENCE_RETURNS: dict[str, ReferenceReturns] = {
    "Pendulum-v1": ReferenceReturns(-1182.3, -209.7),
    "MountainCarContinuous-v0": ReferenceReturns(-32.06, 89.35),
}


def reference_returns(env: str) -> ReferenceReturns | None:
    """The reference returns of a Procgen game or a continuous-control task; None if unknown."""
    return REFERENCE_RETURNS.get(env) or CONTROL_REFERENCE_RETURNS.get(env)


def check_game(game: str) -> str:
    """Return ``game`` if it is one of the 16 Procgen games.

    Raises:
        ValueError: unknown name; the message lists the valid games.
    """
    if game not in GAMES:
        raise ValueError(f"unknown Procgen game {game!r}; expected one of: {', '.join(GAMES)}")
    return game


def check_distribution_mode(game: str, mode: str) -> str:
    """Return ``mode`` if Procgen supports it for ``game``.

    Raises:
        ValueError: unknown mode, or ``exploration`` for a game that lacks it; the message lists
            the valid values.
    """
    if mode not in DISTRIBUTION_MODES:
        raise ValueError(
            f"unknown distribution_mode {mode!r}; expected one of: {', '.join(DISTRIBUTION_MODES)}"
        )
    if mode == "exploration" and game not in EXPLORATION_GAMES:
        raise ValueError(
            f"distribution_mode 'exploration' exists only for: {', '.join(EXPLORATION_GAMES)}; "
            f"got game {game!r}"
        )
    return mode


def normalized_return(game: str, episode_return: float) -> float:
    """Normalize a return between the random policy (0.0) and the paper's expert (1.0).

    ``(R - R_random) / (R_expert - R_random)`` with the references in ``REFERENCE_RETURNS``
    (PAPER.md, "Reference returns"; ``CONTROL_REFERENCE_RETURNS`` for continuous-control tasks).
    Works elementwise on numpy arrays too. An environment without reference returns that is not
    a Procgen name (any other Gymnasium id) gives NaN.

    Raises:
        ValueError: unknown Procgen-like name (not a Gymnasium id: no ``-v`` version suffix).
    """
    ref = reference_returns(game)
    if ref is None:
        if "-v" in game:
            return episode_return * float("nan")
        check_game(game)
    return (episode_return - ref.random) / (ref.expert - ref.random)
