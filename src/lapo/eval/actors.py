"""Actors: anything that maps a batch of observations to actions, for recording and evaluation.

``PolicyActor`` is the one sampling actor of the project: it acts with any policy network that
``lapo.load`` returns (logits modules, and actor-critics whose forward returns
``(logits, value)``), sampling from ``softmax(logits / T)`` with its own seeded generator (or the
argmax). ``RandomPolicy`` is the uniform random baseline.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from lapo.config import check_temperature
from lapo.device import autocast
from lapo.envs.games import NUM_ACTIONS
from lapo.models.frames import check_frames, model_frame_shape
from lapo.rl.ppo import sample_actions, sample_gaussian_actions


class Policy(Protocol):
    """Anything that maps a batch of observations to actions."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``(N, 64, 64, 3) uint8`` observations -> ``(N,)`` integer actions in ``[0, 15)``."""
        ...


class RandomPolicy:
    """Uniform random actions over ``num_actions``, from a seeded generator; with ``bounds``
    ``(low, high)`` (A floats each), uniform ``(N, A) float32`` actions in the box instead."""

    def __init__(self, num_actions: int = NUM_ACTIONS, seed: int = 0, bounds=None) -> None:
        self.num_actions = num_actions
        self.bounds = None if bounds is None else tuple(np.asarray(b, np.float32) for b in bounds)
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``obs (N, ...)`` (only its length is used) -> ``(N,) int64`` actions uniform in
        ``[0, num_actions)``, or with ``bounds`` ``(N, A) float32`` actions uniform in the box."""
        if self.bounds is not None:
            low, high = self.bounds
            u = self._rng.random((len(obs), len(low)))
            return (low + u * (high - low)).astype(np.float32)
        return self._rng.integers(0, self.num_actions, size=len(obs))


class ScriptedActor:
    """The scripted state-feedback expert of a Gymnasium task (``lapo.envs.scripted``): acts on
    the state observations ``env.states`` of the environment it is bound to (``bind``), not on
    the pixels it is given; ``act`` returns ``(N, A) float32`` in the environment's units.

    Raises:
        ValueError: no scripted expert for ``env_id``.
    """

    def __init__(self, env_id: str) -> None:
        from lapo.envs.scripted import SCRIPTED_EXPERTS

        if env_id not in SCRIPTED_EXPERTS:
            raise ValueError(f"a scripted expert exists for {', '.join(SCRIPTED_EXPERTS)}; "
                             f"got {env_id!r}")  # fmt: skip
        self.expert, self.env = SCRIPTED_EXPERTS[env_id], None

    def bind(self, env) -> ScriptedActor:
        """Act on ``env``'s states from now on; returns self."""
        self.env = env
        return self

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The expert's ``(N, A) float32`` actions, in environment units, for the bound
        environment's current ``env.states`` (``obs`` is ignored).

        Raises:
            RuntimeError: not bound to an environment yet (``bind``).
        """
        if self.env is None:
            raise RuntimeError("bind the scripted expert to its environment first")
        return self.expert(self.env.states)


class PolicyActor:
    """Act with a policy network: ``act(obs (N, H, W, C) uint8) -> (N,) int64`` actions.

    Continuous policies (networks with ``action_bounds``, ``lapo.models.actor_critic``) give
    ``(N, A) float32`` actions in the environment's units: the mean (greedy, or a network
    without ``log_std`` such as a regressor) or a Gaussian sample with standard deviation
    ``temperature * exp(log_std)``, clipped to the bounds.

    Args:
        net: ``(B, H, W, C) uint8 -> (B, A)`` logits, or ``-> (logits, value)`` (actor-critics:
            experts, fine-tuned policies); it stays on its own device, observations are moved.
        greedy: argmax instead of sampling.
        bf16: autocast the forward pass to bf16 where the device has native bf16.
        seed: seed of the sampling generator (returns are reproducible given it).
        temperature: sample from ``softmax(logits / temperature)`` (1: the policy as trained;
            below 1 sharper, toward the argmax).

    Raises:
        ValueError: ``temperature`` is not a finite number > 0.
    """

    def __init__(
        self,
        net: nn.Module,
        greedy: bool = False,
        bf16: bool = True,
        seed: int = 0,
        temperature: float = 1.0,
    ) -> None:
        check_temperature(temperature)
        self.net, self.greedy, self.bf16, self.temperature = net, greedy, bf16, temperature
        self.device = next(net.parameters()).device
        self.frame_shape = model_frame_shape(net)  # None: the network does not say
        self.generator = torch.Generator(self.device).manual_seed(seed)

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Actions ``(N,) int64`` (continuous: ``(N, A) float32``) for observations
        ``(N, H, W, C) uint8``, a numpy array or a tensor on any device.

        Raises:
            ValueError: observations of another type, shape or dtype than the network takes.
        """
        check_frames(obs, self.frame_shape, "PolicyActor.act")
        frames = obs if isinstance(obs, torch.Tensor) else torch.from_numpy(obs)
        with autocast(self.device, self.bf16):
            out = self.net(frames.to(self.device))
        logits = (out[0] if isinstance(out, tuple) else out).float()  # (N, A)
        bounds = getattr(self.net, "action_bounds", None)
        if bounds is not None:  # continuous: unit-space mean (and Gaussian log_std, if any)
            log_std = getattr(self.net, "log_std", None)
            if not self.greedy and log_std is not None:
                log_std = log_std + float(np.log(self.temperature))
                logits = sample_gaussian_actions(logits, log_std, self.generator)[0]
            return bounds.to_env(logits).cpu().numpy()
        if self.greedy:
            return logits.argmax(-1).cpu().numpy()
        return sample_actions(logits / self.temperature, self.generator)[0].cpu().numpy()


@torch.no_grad()
def predict_actions(net: nn.Module, observations: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Greedy actions of a logits module on ``(N, H, W, C) uint8`` -> ``(N,) int64``.

    Raises:
        ValueError: observations of another shape or dtype than ``net`` takes.
    """
    check_frames(observations, model_frame_shape(net), "predict_actions")
    if len(observations) == 0:
        return np.zeros(0, dtype=np.int64)
    return _logits(net, observations, batch_size).argmax(-1).numpy()


def _logits(net: nn.Module, observations: np.ndarray, batch_size: int) -> torch.Tensor:
    """``net``'s logits ``(N, A) float32`` on the CPU for ``(N, H, W, C) uint8``, N >= 1, in
    batches on the network's device."""
    device = next(net.parameters()).device
    return torch.cat([
        net(torch.from_numpy(observations[i : i + batch_size]).to(device)).float().cpu()
        for i in range(0, len(observations), batch_size)
    ])  # fmt: skip


@torch.no_grad()
def action_diagnostics(
    net: nn.Module, observations: np.ndarray, actions: np.ndarray, batch_size: int = 256
) -> dict:
    """How a discrete policy acts on held-out frames, beside the true actions there.

    Separates "the policy predicts the expert's actions" from "the policy acts decisively":
    a decoded LAPO policy whose latent policy cannot tell states apart outputs about the same
    latent everywhere, and a sharp decoder then turns it into about the same action everywhere
    (the greedy action's share ``top_action_fraction`` near 1 at a low ``action_entropy``).

    Args:
        net: ``(B, H, W, C) uint8 -> (B, A)`` logits.
        observations: ``(N, H, W, C) uint8`` held-out frames o_t, N >= 1.
        actions: ``(N,) int64`` the true a_t there.

    Returns:
        ``heldout_accuracy`` (greedy action == a_t), ``action_entropy`` (mean over frames of the
        entropy of ``softmax(logits)``, nats; ``log A`` is uniform), ``top_action_fraction``
        (share of frames whose greedy action is the most common greedy action) and
        ``true_top_action_fraction`` (the same share for the true actions).

    Raises:
        ValueError: observations of another shape or dtype than ``net`` takes; no frames.
    """
    if len(observations) == 0 or len(observations) != len(actions):
        raise ValueError(
            f"action_diagnostics needs N >= 1 frames and N actions, got {len(observations)} "
            f"frames and {len(actions)} actions"
        )
    check_frames(observations, model_frame_shape(net), "action_diagnostics")
    logp = torch.log_softmax(_logits(net, observations, batch_size), dim=-1)  # (N, A)
    greedy = logp.argmax(-1).numpy()
    entropy = -(logp.exp() * logp).sum(-1)  # (N,) nats
    top = lambda a: float(np.bincount(a).max() / len(a))  # noqa: E731
    return {
        "heldout_accuracy": float((greedy == actions).mean()),
        "action_entropy": float(entropy.mean()),
        "top_action_fraction": top(greedy),
        "true_top_action_fraction": top(np.asarray(actions, dtype=np.int64)),
    }
