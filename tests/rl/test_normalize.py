"""Reward normalization (``lapo.rl.normalize``) against its known answer."""

from __future__ import annotations

import numpy as np
import pytest

from lapo.rl import RewardNormalizer


def test_reward_normalizer_scales_by_return_std() -> None:
    norm = RewardNormalizer(num_envs=1, gamma=0.0, clip=100.0)
    rng = np.random.default_rng(0)
    rewards = rng.normal(0, 5.0, size=5000)
    out = np.array([norm(np.array([r]), np.array([False]))[0] for r in rewards])
    # gamma=0: the tracked return is the reward itself, so outputs end with std ~1
    assert np.std(out[-2000:]) == pytest.approx(1.0, abs=0.1)
    state = norm.state()
    other = RewardNormalizer(num_envs=1, gamma=0.0, clip=100.0)
    other.load_state(state)
    assert other(np.array([2.0]), np.array([False])) == norm(np.array([2.0]), np.array([False]))
