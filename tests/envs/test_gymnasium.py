"""Gymnasium environments through their rendered pixels (skipped without gymnasium/pygame)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lapo.envs import GymnasiumVecEnv, env_action_spec, make_env
from lapo.envs.scripted import pendulum_expert

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium") is None or importlib.util.find_spec("pygame") is None,
    reason='gymnasium[classic-control] (pygame) not installed: pip install "lapo[control]"',
)


def test_pendulum_pixels_actions_and_auto_reset() -> None:
    env = make_env("Pendulum-v1", 2, seed=0)
    assert isinstance(env, GymnasiumVecEnv)
    assert env.action_spec.continuous and env.action_spec.low == (-2.0,)
    obs = env.reset()
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    assert obs.std() > 0  # a rendered pendulum, not a blank frame
    total = np.zeros(2)
    for t in range(200):  # Pendulum's time limit is 200 steps
        step = env.step(np.full((2, 1), 5.0, np.float32))  # clipped to the bound 2.0
        total += step.reward
        assert step.done.all() == (t == 199)
    assert [ep.length for ep in step.episodes] == [200, 200]
    assert [ep.episode_return for ep in step.episodes] == pytest.approx(total.tolist(), rel=1e-5)
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        env.step(np.zeros(2, np.float32))
    env.close()


def test_same_seed_same_frames_and_scripted_expert_beats_random() -> None:
    a, b = make_env("Pendulum-v1", 1, seed=3), make_env("Pendulum-v1", 1, seed=3)
    assert np.array_equal(a.reset(), b.reset())
    returns = []
    for policy in ("expert", "zero"):
        env, ret, done = make_env("Pendulum-v1", 1, seed=5), 0.0, False
        while not done:
            act = (
                pendulum_expert(env.states) if policy == "expert" else np.zeros((1, 1), np.float32)
            )
            step = env.step(act)
            ret, done = ret + float(step.reward[0]), bool(step.done[0])
        returns.append(ret)
    assert returns[0] > returns[1] + 300  # swings up and balances; doing nothing does not


def test_discrete_gymnasium_and_action_spec() -> None:
    assert env_action_spec("CartPole-v1").n == 2
    env = make_env("CartPole-v1", 2, seed=0)
    assert env.step(np.array([0, 1])).obs.shape == (2, 64, 64, 3)
    assert env.get_state()["envs"] == [b"\0", b"\0"]


def test_frames_show_the_state_not_the_action() -> None:
    """Pendulum-v1's renderer draws the last torque as an arrow; lapo hides it, so that o_(t+1)
    does not show a_t (it handed the IDM the action)."""
    from lapo.envs import gymnasium as lapo_gym
    from lapo.envs.gymnasium import GymnasiumVecEnv

    env = GymnasiumVecEnv("Pendulum-v1", 1, seed=0)
    base = env._env.envs[0].unwrapped
    plain = env._frames()
    for torque in (2.0, -2.0, 0.5):
        base.last_u = torque
        assert (env._frames() == plain).all()
        assert base.last_u == torque  # restored: the environment is as it was
    shown, lapo_gym.ACTION_DRAWN = lapo_gym.ACTION_DRAWN, ()
    try:
        assert (env._frames() != plain).any()  # the renderer does draw it: the test can fail
    finally:
        lapo_gym.ACTION_DRAWN = shown
