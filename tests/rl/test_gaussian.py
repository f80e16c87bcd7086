"""The Gaussian policy of continuous-action PPO against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from lapo.models.actor_critic import ActionBounds, ActorCritic
from lapo.rl import RolloutBuffer, ppo_loss
from lapo.rl.ppo import gaussian_entropy, gaussian_log_prob, sample_gaussian_actions


def test_log_prob_matches_hand_computation() -> None:
    # N(mu=0.5, sigma=2) at a=1.5: z = 0.5; log p = -0.125 - log 2 - 0.5 log(2 pi)
    # N(mu=-1, sigma=exp(-1)) at a=-1: z = 0;  log p = 0 + 1 - 0.5 log(2 pi)
    mean = torch.tensor([[0.5, -1.0]])
    log_std = torch.tensor([math.log(2.0), -1.0])
    actions = torch.tensor([[1.5, -1.0]])
    hand = (-0.125 - math.log(2.0) - 0.5 * math.log(2 * math.pi)) + (
        1.0 - 0.5 * math.log(2 * math.pi)
    )
    assert gaussian_log_prob(mean, log_std, actions).item() == pytest.approx(hand, rel=1e-6)
    reference = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert gaussian_log_prob(mean, log_std, actions).item() == pytest.approx(reference.item())


def test_entropy_matches_hand_computation() -> None:
    # per dimension: log sigma + 0.5 (1 + log 2 pi); sigma = 1 gives 1.4189385
    log_std = torch.tensor([0.0, math.log(3.0)])
    hand = 2 * 0.5 * (1 + math.log(2 * math.pi)) + math.log(3.0)
    assert gaussian_entropy(log_std).item() == pytest.approx(hand, rel=1e-6)
    assert gaussian_entropy(torch.zeros(1)).item() == pytest.approx(1.4189385, abs=1e-6)


def test_samples_are_unbounded_with_the_right_moments_and_log_probs() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.full((20_000, 1), 0.9)
    log_std = torch.tensor([math.log(0.5)])
    actions, logp = sample_gaussian_actions(mean, log_std, gen)
    assert actions.mean().item() == pytest.approx(0.9, abs=0.01)
    assert actions.std().item() == pytest.approx(0.5, abs=0.01)
    assert actions.max().item() > 1.5  # not clipped: clipping happens on the way to the env
    assert torch.allclose(logp, gaussian_log_prob(mean, log_std, actions))


def test_bounds_clip_and_map_unit_space_to_env_units() -> None:
    bounds = ActionBounds([-2.0, 0.0], [2.0, 1.0])
    unit = torch.tensor([[-3.0, 0.0], [0.5, 1.0], [1.0, 5.0]])
    assert bounds.to_env(unit).tolist() == [[-2.0, 0.5], [1.0, 1.0], [2.0, 1.0]]
    back = bounds.to_unit(torch.tensor([[1.0, 0.25]]))
    assert back.tolist() == [[0.5, -0.5]]


def test_ppo_loss_uses_the_gaussian_when_log_std_is_given() -> None:
    # ratio 1 (same log-probs), normalize off: policy loss = -mean(A); entropy from log_std
    mean = torch.zeros(4, 2)
    log_std = torch.zeros(2, requires_grad=True)
    actions = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    old = gaussian_log_prob(mean, log_std.detach(), actions)
    adv = torch.tensor([1.0, 2.0, 3.0, 4.0])
    values = torch.zeros(4)
    loss, stats = ppo_loss(mean, values, actions, old, values, adv, values, value_clip=None,
                           entropy_coef=0.1, normalize_adv=False, log_std=log_std)  # fmt: skip
    assert stats["policy_loss"].item() == pytest.approx(-2.5)
    assert stats["entropy"].item() == pytest.approx(2 * 1.4189385, abs=1e-5)
    assert loss.item() == pytest.approx(-2.5 - 0.1 * 2 * 1.4189385, abs=1e-5)
    loss.backward()
    assert log_std.grad is not None and log_std.grad.abs().sum() > 0


def test_actor_critic_gaussian_head_and_float_action_buffer() -> None:
    class Enc(torch.nn.Module):
        features = 8

        def forward(self, x):
            return x.flatten(1)[:, :8]

    net = ActorCritic(Enc(), 1, bounds=([-2.0], [2.0]))
    mean, value = net(torch.zeros(3, 4, 4, 3, dtype=torch.uint8))
    assert mean.shape == (3, 1) and value.shape == (3,)
    assert net.log_std.tolist() == [0.0]  # std 1 in unit space at initialization
    assert set(net.state_dict()) >= {"log_std", "action_bounds.low", "action_bounds.high"}
    discrete = ActorCritic(Enc(), 15)
    assert "log_std" not in discrete.state_dict() and discrete.action_bounds is None
    buf = RolloutBuffer(2, 3, obs_shape=(4, 4, 3), action_dim=1)
    assert buf.actions.shape == (2, 3, 1) and buf.actions.dtype == torch.float32
    adv = torch.zeros(2, 3)
    (mb,) = buf.minibatches(adv, adv, 1, torch.Generator().manual_seed(0))
    assert mb["actions"].shape == (6, 1)
