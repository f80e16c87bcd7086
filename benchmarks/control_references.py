"""Measure the reference returns of the continuous-control tasks (``CONTROL_REFERENCE_RETURNS``).

random: uniform random actions in the bounds, 100 episodes, seeds 10000-10099; expert: the
scripted controllers of ``lapo.envs.scripted``, 100 episodes, seeds 20000-20099. On the state
observations (no rendering: the returns do not depend on it). Prints mean and 95% CI.

    PYTHONPATH=src python benchmarks/control_references.py
"""

import gymnasium as gym
import numpy as np

from lapo.envs.scripted import SCRIPTED_EXPERTS


def episode_returns(name: str, expert, episodes: int, seed0: int) -> np.ndarray:
    env, rng, out = gym.make(name), np.random.default_rng(seed0), []
    low, high = env.action_space.low, env.action_space.high
    for e in range(episodes):
        obs, _ = env.reset(seed=seed0 + e)
        done, ret = False, 0.0
        while not done:
            if expert is None:
                action = (low + rng.random(low.shape) * (high - low)).astype(np.float32)
            else:
                action = expert(np.asarray(obs)[None])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            ret, done = ret + float(reward), terminated or truncated
        out.append(ret)
    return np.array(out)


for name, expert in SCRIPTED_EXPERTS.items():
    for label, policy, seed0 in (("random", None, 10_000), ("expert", expert, 20_000)):
        r = episode_returns(name, policy, 100, seed0)
        print(f"{name} {label}: {r.mean():.2f} +- {1.96 * r.std(ddof=1) / np.sqrt(len(r)):.2f}")
