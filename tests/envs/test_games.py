"""Procgen game facts: names, action meanings, reference returns and normalization."""

from __future__ import annotations

import numpy as np
import pytest

from lapo.envs import (
    ACTION_MEANINGS,
    DISTRIBUTION_MODES,
    GAMES,
    NOOP_ACTION,
    NUM_ACTIONS,
    REFERENCE_RETURNS,
    ReferenceReturns,
    check_distribution_mode,
    check_game,
    normalized_return,
)
from lapo.envs.games import EXPLORATION_GAMES

#: The paper's table (shared/reference/PAPER.md, "Reference returns"): game -> (random, expert).
PAPER_REFERENCE_RETURNS = {
    "bigfish": (0.874, 36.336),
    "bossfight": (0.046, 11.634),
    "caveflyer": (2.597, 9.184),
    "chaser": (0.663, 9.956),
    "climber": (2.224, 10.234),
    "coinrun": (2.705, 9.933),
    "dodgeball": (0.613, 13.487),
    "fruitbot": (-2.533, 29.925),
    "heist": (3.076, 9.685),
    "jumper": (3.411, 8.460),
    "leaper": (2.511, 7.408),
    "maze": (4.273, 9.969),
    "miner": (1.251, 11.893),
    "ninja": (2.560, 9.475),
    "plunder": (4.321, 11.461),
    "starpilot": (1.525, 66.986),
}


def test_games():
    assert len(GAMES) == len(set(GAMES)) == 16
    assert list(GAMES) == sorted(GAMES)
    assert set(GAMES) == set(PAPER_REFERENCE_RETURNS)


def test_reference_returns_match_the_paper():
    assert set(REFERENCE_RETURNS) == set(GAMES)
    for game, (random, expert) in PAPER_REFERENCE_RETURNS.items():
        assert REFERENCE_RETURNS[game] == ReferenceReturns(random=random, expert=expert)
        assert expert > random


@pytest.mark.parametrize("game", GAMES)
def test_normalized_return_endpoints(game):
    ref = REFERENCE_RETURNS[game]
    assert normalized_return(game, ref.random) == pytest.approx(0.0, abs=1e-12)
    assert normalized_return(game, ref.expert) == pytest.approx(1.0)
    middle = (ref.random + ref.expert) / 2
    assert normalized_return(game, middle) == pytest.approx(0.5)
    above = ref.expert + (ref.expert - ref.random)
    assert normalized_return(game, above) == pytest.approx(2.0)


def test_normalized_return_examples():
    # coinrun: (10 - 2.705) / (9.933 - 2.705)
    assert normalized_return("coinrun", 10.0) == pytest.approx(7.295 / 7.228)
    assert normalized_return("fruitbot", 0.0) == pytest.approx(2.533 / 32.458)
    assert normalized_return("bossfight", 0.0) < 0


def test_normalized_return_elementwise():
    ref = REFERENCE_RETURNS["starpilot"]
    got = normalized_return("starpilot", np.array([ref.random, ref.expert, 0.0]))
    np.testing.assert_allclose(got, [0.0, 1.0, -ref.random / (ref.expert - ref.random)])


def test_unknown_game_lists_valid_games():
    for call in (lambda: check_game("pong"), lambda: normalized_return("CoinRun", 1.0)):
        with pytest.raises(ValueError, match="unknown Procgen game") as info:
            call()
        assert all(game in str(info.value) for game in GAMES)
    assert check_game("maze") == "maze"


def test_distribution_modes():
    for mode in ("easy", "hard", "extreme", "memory"):
        assert check_distribution_mode("bigfish", mode) == mode
    for game in EXPLORATION_GAMES:
        assert check_distribution_mode(game, "exploration") == "exploration"
    with pytest.raises(ValueError, match="unknown distribution_mode 'medium'") as info:
        check_distribution_mode("coinrun", "medium")
    assert all(mode in str(info.value) for mode in DISTRIBUTION_MODES)
    with pytest.raises(ValueError, match="exploration' exists only for") as info:
        check_distribution_mode("bigfish", "exploration")
    assert all(game in str(info.value) for game in EXPLORATION_GAMES)
    assert "'bigfish'" in str(info.value)


def test_action_meanings():
    assert len(ACTION_MEANINGS) == NUM_ACTIONS == 15
    assert len(set(ACTION_MEANINGS)) == 15
    assert ACTION_MEANINGS[4] == "NOOP" and NOOP_ACTION == 4
    assert ACTION_MEANINGS == (
        "LEFT-DOWN", "LEFT", "LEFT-UP", "DOWN", "NOOP", "UP", "RIGHT-DOWN", "RIGHT", "RIGHT-UP",
        "D", "A", "W", "S", "Q", "E",
    )  # fmt: skip
