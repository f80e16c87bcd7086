"""ILPO's networks and losses (Edwards et al. 2019): known answers on hand-sized cases."""

from __future__ import annotations

import pytest
import torch

from lapo.config import ILPO_PRESETS, ILPOConfig
from lapo.models.build import build_ilpo_model, build_ilpo_policy
from lapo.models.ilpo import ActionRemap, LatentForwardModel, ilpo_losses, transition_errors


def _hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B = 2 transitions, K = 3 latents, frames of 1 channel x 1 x 2 pixels."""
    next_frame = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 2)
    predictions = torch.tensor(
        [
            [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]],  # errors 0, 1, 0.25 -> min 0 at z=0
            [[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]],  # errors 1, 0.5, 0.25 -> min 0.25 at z=2
        ]
    ).view(2, 3, 1, 1, 2)
    return predictions, torch.zeros(2, 3), next_frame  # uniform pi(z | o_t)


def test_min_over_latents_loss_by_hand() -> None:
    predictions, logits, next_frame = _hand_case()
    errors = transition_errors(predictions, next_frame)
    torch.testing.assert_close(errors, torch.tensor([[0.0, 1.0, 0.25], [1.0, 0.5, 0.25]]))
    l_min, l_exp, argmin = ilpo_losses(predictions, logits, next_frame)
    # L_min = mean(0, 0.25) = 0.125
    torch.testing.assert_close(l_min, torch.tensor(0.125))
    assert argmin.tolist() == [0, 2]
    # Expected transition under uniform pi: sample 0 -> (0.5, 0.5), squared errors 0.25, 0.25;
    # sample 1 -> (1.5/3, 0.5/3) = (0.5, 1/6), squared errors 0.25, (5/6)^2. Mean of the four.
    expected = (0.25 + 0.25 + 0.25 + (5 / 6) ** 2) / 4
    torch.testing.assert_close(l_exp, torch.tensor(expected))


def test_expected_loss_with_a_confident_policy_is_that_latents_error() -> None:
    predictions, _, next_frame = _hand_case()
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]])  # pi = z0 for b0, z1 for b1
    _, l_exp, _ = ilpo_losses(predictions, logits, next_frame)
    torch.testing.assert_close(l_exp, torch.tensor((0.0 + 0.5) / 2))


def test_each_loss_trains_only_its_network() -> None:
    predictions, logits, next_frame = _hand_case()
    predictions.requires_grad_(True)
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], requires_grad=True)
    l_min, l_exp, _ = ilpo_losses(predictions, logits, next_frame)
    (g_pred_exp,) = torch.autograd.grad(l_exp, predictions, allow_unused=True, retain_graph=True)
    assert g_pred_exp is None  # G is held fixed in L_exp (stop-gradient)
    g_pred_min, g_logits_min = torch.autograd.grad(l_min, (predictions, logits), allow_unused=True)
    assert g_logits_min is None  # L_min does not train the latent policy
    # only the argmin latent of each sample gets a gradient from L_min: z=2 of sample 1 (sample
    # 0's argmin z=0 predicts exactly, so its gradient is zero too)
    nonzero = g_pred_min.flatten(2).abs().sum(-1) > 0  # (B, K)
    assert nonzero.tolist() == [[False, False, False], [False, False, True]]


def test_forward_model_shapes_and_identity_at_zero_delta() -> None:
    torch.manual_seed(0)
    model = LatentForwardModel(num_latents=3, channels=3, base=4)
    frame = torch.rand(2, 3, 16, 16) - 0.5
    out = model(frame)
    assert out.shape == (2, 3, 3, 16, 16) and out.dtype == torch.float32
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    torch.testing.assert_close(model(frame), frame[:, None].expand(-1, 3, -1, -1, -1))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 3, 12, 12))


def test_latents_change_the_prediction() -> None:
    torch.manual_seed(0)
    model = LatentForwardModel(num_latents=4, channels=3, base=4)
    out = model(torch.rand(1, 3, 16, 16) - 0.5)
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_policy_is_the_mixture_of_remapped_latents() -> None:
    torch.manual_seed(0)
    config = ILPOConfig(**ILPO_PRESETS["smoke"])
    policy = build_ilpo_policy(config, num_actions=5)
    obs = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    log_pa = policy(obs)  # (3, 5)
    torch.testing.assert_close(log_pa.exp().sum(-1), torch.ones(3))
    features = policy.latent_policy.features(obs)
    pz = torch.softmax(policy.latent_policy(obs), -1)  # (3, K)
    pa_z = torch.stack(
        [torch.softmax(policy.remap(features, torch.full((3,), z)), -1)
         for z in range(config.num_latents)], dim=1,
    )  # fmt: skip
    torch.testing.assert_close(log_pa.exp(), (pz[:, :, None] * pa_z).sum(1))


def test_remap_all_latents_matches_one_at_a_time() -> None:
    torch.manual_seed(0)
    remap = ActionRemap(features=6, num_latents=3, num_actions=4, hidden=(8,))
    features = torch.randn(2, 6)
    every = remap.all_latents(features)  # (2, 3, 4)
    for z in range(3):
        torch.testing.assert_close(every[:, z], remap(features, torch.full((2,), z)))


def test_model_forward_takes_uint8_observations() -> None:
    config = ILPOConfig(**ILPO_PRESETS["smoke"])
    model = build_ilpo_model(config)
    predictions, logits = model(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
    assert predictions.shape == (2, config.num_latents, 3, 64, 64)
    assert logits.shape == (2, config.num_latents)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="num_latents"):
        ILPOConfig(num_latents=1)
    with pytest.raises(ValueError, match="exploration"):
        ILPOConfig(exploration=1.5)
    with pytest.raises(ValueError, match="size"):
        ILPOConfig(size="huge")
