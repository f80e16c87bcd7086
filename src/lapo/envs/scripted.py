"""Scripted state-feedback experts of continuous-control tasks: the data-generating "experts"
of lapo's continuous-control experiments (the paper's appendix A.3 trains PPO experts; a
controller on the true state plays that role here at no training cost). They read the
environment's state observations (``GymnasiumVecEnv.states``) and are recorded as pixels.

Returns over 100 episodes are the ``expert`` references in ``lapo.envs.games``.
"""

from __future__ import annotations

import numpy as np


def pendulum_expert(states: np.ndarray) -> np.ndarray:
    """Pendulum-v1: bang-bang energy pumping, then a PD controller near the top.

    Args:
        states: ``(N, 3) float`` rows ``(cos theta, sin theta, angular velocity)``.

    Returns:
        ``(N, 1) float32`` torques in ``[-2, 2]``: ``-(12 theta + 2.5 omega)`` when
        ``cos theta > 0.85``, else ``2 sign(omega)`` while the energy
        ``0.5 omega^2 + 10 (cos theta - 1)`` is below the upright's (0) and the opposite above.
    """
    states = np.asarray(states, dtype=np.float64)
    c, s, w = states[:, 0], states[:, 1], states[:, 2]
    theta = np.arctan2(s, c)
    energy = 0.5 * w**2 + 10.0 * (c - 1.0)
    pump = 2.0 * np.sign(w) * np.where(energy < 0, 1.0, -1.0)
    torque = np.where(c > 0.85, -(12.0 * theta + 2.5 * w), pump)
    return np.clip(torque, -2.0, 2.0).astype(np.float32)[:, None]


def mountain_car_expert(states: np.ndarray) -> np.ndarray:
    """MountainCarContinuous-v0: full force in the direction of motion (pumps energy).

    Args:
        states: ``(N, 2) float`` rows ``(position, velocity)``.

    Returns:
        ``(N, 1) float32``: ``+1`` where velocity >= 0, else ``-1``.
    """
    v = np.asarray(states, dtype=np.float64)[:, 1]
    return np.where(v >= 0, 1.0, -1.0).astype(np.float32)[:, None]


#: Gymnasium id -> scripted expert ``states (N, D) -> actions (N, A) float32``.
SCRIPTED_EXPERTS = {"Pendulum-v1": pendulum_expert, "MountainCarContinuous-v0": mountain_car_expert}
