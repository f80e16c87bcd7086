"""Latent probes on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from lapo.eval.probes import (
    code_action_histogram,
    joint_code,
    normalized_mutual_information,
    probe_accuracy,
    probe_r2,
    standardize,
)


def test_probes_recover_linearly_encoded_actions() -> None:
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 5, 1000)
    centers = rng.normal(size=(5, 16)) * 3
    latents = centers[actions] + rng.normal(size=(1000, 16)) * 0.3
    result = probe_accuracy(latents, actions, 5, steps=200)
    assert result.linear_accuracy > 0.97 and result.mlp_accuracy > 0.97
    assert result.majority_accuracy < 0.3
    assert result.num_train + result.num_test == 1000


def test_mlp_probe_beats_linear_on_xor() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(1500, 2))
    actions = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    result = probe_accuracy(x, actions, 2, steps=500)
    assert result.linear_accuracy < 0.7 and result.mlp_accuracy > 0.9


def test_a_feature_constant_in_training_cannot_blow_up_held_out_scores() -> None:
    """Pooled frame differences of a static background: 0 on every training sample, 1 on a few
    held-out ones. Divided by a near-zero deviation it once gave an R^2 of -9e9."""
    rng = np.random.default_rng(4)
    features = rng.normal(size=(400, 8)).astype(np.float32)
    actions = (features[:, :2] @ np.array([[0.5], [-0.3]])).astype(np.float32)  # (400, 1)
    perm = np.random.default_rng(0).permutation(400)  # the probes' split at seed 0
    spike = np.zeros((400, 1), np.float32)
    spike[perm[200:203]] = 1.0  # held-out half only
    with_spike = np.concatenate([features, spike], axis=1)
    _, clean = probe_r2(features, actions, steps=300)
    linear, mlp = probe_r2(with_spike, actions, steps=300)
    assert clean > 0.9 and mlp > clean - 0.05 and linear > 0.9
    codes = (actions[:, 0] > 0).astype(int)
    assert probe_accuracy(with_spike, codes, 2, steps=200).linear_accuracy > 0.9


def test_standardize_scales_on_training_samples_drops_constants_and_clips() -> None:
    x = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 1.0], [100.0, 6.0, 1.0]], np.float32)
    out = standardize(x, np.array([0, 1]))  # train: mean (1, 5, 1), std (1, 0, 0)
    np.testing.assert_allclose(out, [[-1.0], [1.0], [10.0]])  # 99 deviations, clipped to 10
    assert standardize(x[:, 1:], np.array([0, 1])).shape == (3, 1)  # nothing varies: zeros
    assert not standardize(x[:, 1:], np.array([0, 1])).any()


def test_probe_on_noise_is_chance() -> None:
    rng = np.random.default_rng(2)
    result = probe_accuracy(rng.normal(size=(1000, 8)), rng.integers(0, 4, 1000), 4, steps=200)
    assert result.linear_accuracy < 0.32 and result.mlp_accuracy < 0.35


def test_nmi_extremes() -> None:
    actions = np.repeat(np.arange(4), 50)
    assert normalized_mutual_information(actions + 10, actions) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 4, 100000)
    assert normalized_mutual_information(noise, rng.integers(0, 4, 100000)) < 0.001


def test_histogram_and_joint_code() -> None:
    codes = np.array([0, 0, 1, 1, 1])
    actions = np.array([2, 2, 0, 1, 1])
    assert code_action_histogram(codes, actions, 3) == {0: [0, 0, 2], 1: [1, 2, 0]}
    idx = np.array([[[1, 2]], [[0, 0]], [[3, 1]]])  # (N=3, G=1, L=2), codebook size 4
    assert joint_code(idx, 4).tolist() == [1 + 2 * 4, 0, 3 + 1 * 4]


def test_probe_is_seeded_and_leaves_global_rng_alone() -> None:
    import torch

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(400, 8)), rng.integers(0, 3, 400)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = probe_accuracy(x, y, 3, steps=50)
    assert torch.equal(torch.rand(1), expected_next)  # caller's RNG stream untouched
    assert probe_accuracy(x, y, 3, steps=50) == first


def test_mlp_probe_does_not_memorize_below_the_majority_class() -> None:
    # 128-dim latents that carry a weak signal, imbalanced actions: an MLP fitted to convergence
    # memorizes its half and tests below "always the majority action"; early stopping must not
    rng = np.random.default_rng(4)
    actions = rng.choice(6, size=3000, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1])
    latents = rng.normal(size=(3000, 128))
    latents[:, 0] += 0.5 * (actions == 1)
    result = probe_accuracy(latents, actions, 6)
    assert result.mlp_accuracy >= result.majority_accuracy - 0.02
    assert result.linear_accuracy >= result.majority_accuracy - 0.02


def test_fit_classifier_keeps_the_best_validation_weights() -> None:
    import torch

    from lapo.eval.probes import fit_classifier

    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))  # labels are noise: val loss rises
    xv, yv = torch.randn(64, 4), torch.randint(0, 3, (64,))
    net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    info = fit_classifier(
        net, x, y, xv, yv, lr=1e-2, batch_size=64, updates=2000, eval_every=5, patience=5,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert info["updates"] < 2000  # stopped early
    assert info["best_update"] <= info["updates"] - 5 * 5
    with torch.no_grad():
        val = float(torch.nn.functional.cross_entropy(net(xv), yv))
    assert val == pytest.approx(info["validation_loss"], rel=1e-6)  # the best weights are kept
