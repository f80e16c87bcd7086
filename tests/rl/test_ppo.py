"""PPO pieces against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from lapo.rl import clipped_surrogate_loss, clipped_value_loss, compute_gae, ppo_loss


def test_gae_matches_hand_computation() -> None:
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[False], [True], [False]])
    last_value = torch.tensor([2.0])
    # t=2: delta = 2 + 0.9*2.0 - 1.5 = 2.3;              A2 = 2.3
    # t=1: done -> delta = 0 - 1.0 = -1.0;                A1 = -1.0 (no bootstrap past the end)
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4;               A0 = 1.4 + 0.9*0.8*(-1.0) = 0.68
    adv, ret = compute_gae(rewards, values, dones, last_value, gamma, lam)
    assert adv[:, 0].tolist() == pytest.approx([0.68, -1.0, 2.3])
    assert ret[:, 0].tolist() == pytest.approx([1.18, 0.0, 3.8])


def test_gae_with_lambda_one_is_discounted_return_minus_value() -> None:
    torch.manual_seed(0)
    T, gamma = 6, 0.95
    rewards, values = torch.rand(T, 2), torch.rand(T, 2)
    dones = torch.zeros(T, 2, dtype=torch.bool)
    last = torch.rand(2)
    adv, _ = compute_gae(rewards, values, dones, last, gamma, 1.0)
    for t in range(T):
        discounted = sum(gamma ** (k - t) * rewards[k] for k in range(t, T))
        discounted = discounted + gamma ** (T - t) * last
        assert torch.allclose(adv[t], discounted - values[t], atol=1e-5)


def test_clipped_surrogate_hand_values() -> None:
    old = torch.zeros(3)
    logprob = torch.log(torch.tensor([1.5, 0.5, 1.1]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([1.0, -2.0, 3.0])
    loss, clip_fraction = clipped_surrogate_loss(logprob, old, adv, clip=0.2)
    # min(1.5*1, 1.2*1)=1.2; min(0.5*-2, 0.8*-2)=-1.6; min(1.1*3, 1.1*3)=3.3
    assert loss.item() == pytest.approx(-(1.2 - 1.6 + 3.3) / 3)
    assert clip_fraction.item() == pytest.approx(2 / 3)


def test_clipped_value_loss_hand_values() -> None:
    value, old, ret = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    # sample 0: unclipped (2-3)^2=1; clipped 1.2 -> (1.2-3)^2=3.24 -> max 3.24; sample 1: 1
    assert clipped_value_loss(value, old, ret, 0.2).item() == pytest.approx(0.5 * (3.24 + 1) / 2)
    assert clipped_value_loss(value, old, ret, None).item() == pytest.approx(0.5 * (1 + 1) / 2)


def test_ppo_loss_combines_terms() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # probs (.5,.5) and (.75,.25)
    actions = torch.tensor([0, 1])
    old_logprob = torch.log(torch.tensor([0.5, 0.25]))  # ratio 1 for both
    adv, ret = torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])
    value, old_value = torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2.0])
    loss, stats = ppo_loss(
        logits,
        value,
        actions,
        old_logprob,
        old_value,
        adv,
        ret,
        clip=0.2,
        value_clip=0.2,
        value_coef=0.5,
        entropy_coef=0.01,
        normalize_adv=False,
    )
    entropy = (math.log(2) + -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    expected = -(1.0 - 1.0) / 2 + 0.5 * (0.5 * (1 + 1) / 2) - 0.01 * entropy
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["entropy"].item() == pytest.approx(entropy)
    assert stats["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)
