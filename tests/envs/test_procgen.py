"""ProcgenVecEnv over gym3: shapes, determinism, episode statistics and argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import lapo.envs.procgen as procgen_module
from lapo.envs import ACTION_MEANINGS, NUM_ACTIONS, OBS_SHAPE, EpisodeStats, ProcgenVecEnv

try:  # importing ``procgen`` itself needs gym; the loader skips that, as ProcgenVecEnv does
    procgen_module._load_procgen_gym3_env()
except ImportError as exc:
    pytest.skip(f"procgen-mirror/gym3 not installed: {exc}", allow_module_level=True)


def make_env(game: str = "miner", num_envs: int = 3, seed: int | None = 7, **kwargs):
    return ProcgenVecEnv(game, num_envs, seed=seed, num_threads=0, **kwargs)


def rollout(env: ProcgenVecEnv, actions: np.ndarray) -> np.ndarray:
    """Observations ``(T + 1, N, 64, 64, 3)`` from reset and after each of ``actions (T, N)``."""
    obs = [env.reset()]
    obs += [env.step(a).obs for a in actions]
    return np.stack(obs)


def test_observation_shapes_and_dtypes():
    env = make_env(num_envs=3)
    obs = env.reset()
    assert OBS_SHAPE == (64, 64, 3)
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    assert obs.any()  # a rendered frame, not zeros
    result = env.step(np.zeros(3, dtype=np.int64))
    assert result.obs.shape == (3, 64, 64, 3) and result.obs.dtype == np.uint8
    assert result.reward.shape == (3,) and result.reward.dtype == np.float32
    assert result.done.shape == (3,) and result.done.dtype == np.bool_
    assert isinstance(result.episodes, list)
    assert env.num_actions == NUM_ACTIONS == 15
    env.close()


def test_same_seed_same_observations():
    actions = np.random.default_rng(0).integers(0, NUM_ACTIONS, size=(40, 2))
    a = rollout(make_env("coinrun", 2, seed=123), actions)
    b = rollout(make_env("coinrun", 2, seed=123), actions)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[-1])  # the observations did change over time
    c = rollout(make_env("coinrun", 2, seed=124), actions)
    assert not np.array_equal(a, c)


def test_levels_are_passed_through():
    one_level = make_env("maze", 3, num_levels=1, start_level=5).reset()
    assert (one_level == one_level[:1]).all()  # every env plays level 5
    other = make_env("maze", 3, num_levels=1, start_level=6).reset()
    assert not np.array_equal(one_level[0], other[0])


def test_episode_stats_match_rewards():
    """Reported return and length equal the rewards and steps since that env's last episode."""
    env = make_env("miner", num_envs=4, seed=11)
    env.reset()
    rng = np.random.default_rng(1)
    returns = np.zeros(4)
    lengths = np.zeros(4, dtype=np.int64)
    rewarded = np.zeros(4, dtype=bool)  # env had an episode with a nonzero return
    ended: list[EpisodeStats] = []
    for _ in range(5000):
        result = env.step(rng.integers(0, NUM_ACTIONS, size=4))
        returns += result.reward
        lengths += 1
        assert [e.env_index for e in result.episodes] == np.flatnonzero(result.done).tolist()
        for stats in result.episodes:
            i = stats.env_index
            assert stats.episode_return == pytest.approx(returns[i])
            assert stats.length == lengths[i]
            returns[i], lengths[i] = 0.0, 0
        ended += result.episodes
        # stop once an env has finished an episode after a rewarded one (tests the reset)
        if any(rewarded[e.env_index] for e in result.episodes):
            break
        for stats in result.episodes:
            rewarded[stats.env_index] |= stats.episode_return != 0
    else:
        pytest.fail(f"no env finished two episodes, one rewarded, in 5000 steps: {ended}")
    assert all(e.length >= 1 for e in ended)


def test_reset_clears_bookkeeping():
    env = make_env("miner", num_envs=2, seed=3)
    env.reset()
    rng = np.random.default_rng(2)
    for _ in range(5):
        env.step(rng.integers(0, NUM_ACTIONS, size=2))
    env.reset()
    steps = 0
    while True:
        steps += 1
        result = env.step(rng.integers(0, NUM_ACTIONS, size=2))
        if result.episodes:
            assert result.episodes[0].length == steps  # counted from reset, not from creation
            break
        assert steps < 3000


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (np.zeros(4, dtype=np.int64), r"shape \(3,\)"),
        (np.zeros((3, 1), dtype=np.int64), r"shape \(3,\)"),
        (np.zeros(3, dtype=np.float32), "integer array"),
        (np.zeros(3, dtype=bool), "integer array"),
        (np.array([0, 15, 1]), r"in \[0, 15\)"),
        (np.array([0, -1, 1]), r"in \[0, 15\)"),
    ],
)
def test_invalid_actions(actions, match):
    env = make_env(num_envs=3)
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    assert env.step(np.array([4, 4, 4])).obs.shape == (3, *OBS_SHAPE)  # still usable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"game": "pong"}, "unknown Procgen game 'pong'; expected one of: bigfish"),
        ({"distribution_mode": "medium"}, "unknown distribution_mode 'medium'"),
        ({"game": "bigfish", "distribution_mode": "exploration"}, "exists only for"),
        ({"num_envs": 0}, "num_envs must be >= 1"),
        ({"num_levels": -1}, "must be >= 0"),
        ({"start_level": -2}, "must be >= 0"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*31\)"),
        ({"seed": 2**31}, r"seed must be in \[0, 2\*\*31\)"),
    ],
)
def test_invalid_arguments_rejected_before_construction(monkeypatch, kwargs, match):
    def no_construction():
        raise AssertionError("the environment was constructed despite invalid arguments")

    monkeypatch.setattr(procgen_module, "_load_procgen_gym3_env", no_construction)
    kwargs = {"game": "coinrun", "num_envs": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        ProcgenVecEnv(**kwargs)


def test_action_meanings_match_procgen():
    env = make_env(num_envs=1)
    combos = env._env.get_combos()
    assert len(combos) == NUM_ACTIONS
    assert ["-".join(keys) or "NOOP" for keys in combos] == list(ACTION_MEANINGS)
