"""The one sampling actor (lapo.eval.actors.PolicyActor) and the random baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lapo.eval.actors import PolicyActor, RandomPolicy, action_diagnostics, predict_actions


class _Fixed(nn.Module):
    """Logits that do not depend on the observation: ``(B, 3)`` = log([0.7, 0.2, 0.1])."""

    def __init__(self, with_value: bool = False) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.log(torch.tensor([0.7, 0.2, 0.1])))
        self.with_value = with_value

    def forward(self, obs: torch.Tensor):
        logits = self.logits.expand(len(obs), 3)
        return (logits, torch.zeros(len(obs))) if self.with_value else logits


OBS = np.zeros((20_000, 2, 2, 3), dtype=np.uint8)


def test_sampling_follows_the_softmax_and_the_temperature() -> None:
    freq = np.bincount(PolicyActor(_Fixed(), bf16=False, seed=0).act(OBS), minlength=3) / len(OBS)
    assert np.allclose(freq, [0.7, 0.2, 0.1], atol=0.015)
    sharp = PolicyActor(_Fixed(), bf16=False, seed=0, temperature=0.5).act(OBS)
    p = np.array([0.7, 0.2, 0.1]) ** 2 / (np.array([0.7, 0.2, 0.1]) ** 2).sum()  # T = 1/2
    assert np.allclose(np.bincount(sharp, minlength=3) / len(OBS), p, atol=0.015)


def test_actor_critics_greedy_and_seeds() -> None:
    actor_critic = PolicyActor(_Fixed(with_value=True), bf16=False, seed=3)
    logits_only = PolicyActor(_Fixed(), bf16=False, seed=3)
    assert np.array_equal(actor_critic.act(OBS[:500]), logits_only.act(OBS[:500]))
    assert (PolicyActor(_Fixed(), greedy=True).act(OBS[:10]) == 0).all()
    assert (predict_actions(_Fixed(), OBS[:10], batch_size=3) == 0).all()
    with pytest.raises(ValueError):
        PolicyActor(_Fixed(), temperature=0.0)


def test_random_policy_is_uniform_and_seeded() -> None:
    a = RandomPolicy(num_actions=15, seed=1).act(OBS)
    assert np.array_equal(a, RandomPolicy(num_actions=15, seed=1).act(OBS))
    assert set(np.unique(a)) == set(range(15))
    assert abs(np.bincount(a).max() / len(a) - 1 / 15) < 0.01


class _ByPixel(nn.Module):
    """Logits that follow the first pixel's red value: action 0 where it is 0, else action 1,
    at probability 0.9 over 3 actions (the rest split evenly)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        p = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
        return torch.log(p[(obs[:, 0, 0, 0] > 0).long()]) * self.scale


def test_action_diagnostics_against_hand_values() -> None:
    obs = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    obs[3, 0, 0, 0] = 255  # greedy actions 0, 0, 0, 1
    out = action_diagnostics(_ByPixel(), obs, np.array([0, 1, 0, 1]))
    entropy = -(0.9 * np.log(0.9) + 2 * 0.05 * np.log(0.05))
    assert out["heldout_accuracy"] == pytest.approx(3 / 4)
    assert out["action_entropy"] == pytest.approx(entropy, rel=1e-5)
    assert out["top_action_fraction"] == pytest.approx(3 / 4)
    assert out["true_top_action_fraction"] == pytest.approx(2 / 4)
    constant = action_diagnostics(_Fixed(), OBS[:10], np.arange(10) % 3)
    assert constant["top_action_fraction"] == 1.0
    assert constant["action_entropy"] == pytest.approx(
        -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)), rel=1e-5
    )
    with pytest.raises(ValueError, match="N >= 1 frames"):
        action_diagnostics(_Fixed(), OBS[:0], np.zeros(0, dtype=np.int64))
