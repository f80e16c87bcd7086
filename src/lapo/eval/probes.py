"""Latent-action quality: how much of the true action the latents carry (never used to train).

Paper section 6.3 probes the latent space for true actions. We report, on held-out episodes:
* probe accuracy: a linear and an MLP (128, 128) classifier from latent to true action, trained on
  one half of the samples and tested on the other half;
* normalized mutual information between discrete code indices and true actions;
* the per-code true-action histogram.
Probes are fitted here with plain torch (full-batch Adam) because the probe is part of the
evaluation protocol; a library classifier would add a dependency for ~20 lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of true-action probes on the held-out half (fractions in [0, 1])."""

    linear_accuracy: float
    mlp_accuracy: float
    majority_accuracy: float  # always predicting the most frequent training action
    num_train: int
    num_test: int


def _fit_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    weight_decay: float,
) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():  # callers may be inside no_grad
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def probe_accuracy(
    latents: np.ndarray, actions: np.ndarray, num_actions: int, *, seed: int = 0, steps: int = 500
) -> ProbeResult:
    """Train linear and MLP (128, 128) probes latent -> true action; test on a held-out half.

    Args:
        latents: ``(N, D) float`` latent actions (pre- or post-quantization).
        actions: ``(N,) int`` true actions in ``[0, num_actions)``.
        seed: split and initialization seed.
        steps: full-batch Adam steps per probe.

    Raises:
        ValueError: fewer than 4 samples, or mismatched lengths.
    """
    latents = np.asarray(latents, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.int64)
    if len(latents) != len(actions) or len(latents) < 4:
        raise ValueError(
            f"need >= 4 (latent, action) pairs of equal count, got "
            f"{len(latents)} latents and {len(actions)} actions"
        )
    perm = np.random.default_rng(seed).permutation(len(latents))
    half = len(perm) // 2
    train, test = perm[:half], perm[half:]
    mean, std = latents[train].mean(0), latents[train].std(0) + 1e-6
    x = torch.from_numpy((latents - mean) / std)
    y = torch.from_numpy(actions)
    dim = x.shape[1]
    results = []
    with torch.random.fork_rng():  # seeded probes, without touching the caller's RNG stream
        torch.manual_seed(seed)
        probes = (nn.Linear(dim, num_actions),
                  nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                nn.Linear(128, num_actions)))  # fmt: skip
        for model in probes:
            _fit_classifier(model, x[train], y[train], steps, 1e-2 if dim < 1024 else 3e-3, 1e-4)
            with torch.no_grad():
                predicted = model(x[test]).argmax(1)
            results.append(float((predicted == y[test]).float().mean()))
    majority = np.bincount(actions[train], minlength=num_actions).argmax()
    return ProbeResult(
        results[0], results[1], float((actions[test] == majority).mean()), len(train), len(test)
    )


def normalized_mutual_information(codes: np.ndarray, actions: np.ndarray) -> float:
    """NMI between discrete codes and true actions, ``I(C; A) / sqrt(H(C) H(A))`` in [0, 1].

    Args:
        codes: ``(N,) int`` code ids (e.g. a joint index over codebooks); actions: ``(N,) int``.
    """
    _, c = np.unique(codes, return_inverse=True)
    _, a = np.unique(actions, return_inverse=True)
    joint = np.zeros((c.max() + 1, a.max() + 1))
    np.add.at(joint, (c, a), 1)
    joint /= joint.sum()
    pc, pa = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pc[:, None] * pa[None, :])[nz])).sum())
    hc = float(-(pc[pc > 0] * np.log(pc[pc > 0])).sum())
    ha = float(-(pa[pa > 0] * np.log(pa[pa > 0])).sum())
    return mi / np.sqrt(hc * ha) if hc > 0 and ha > 0 else 0.0


def code_action_histogram(
    codes: np.ndarray, actions: np.ndarray, num_actions: int
) -> dict[int, list[int]]:
    """For each code id used, the count of each true action: ``{code: [count per action]}``."""
    table: dict[int, list[int]] = {}
    for code in np.unique(codes):
        counts = np.bincount(actions[codes == code], minlength=num_actions)
        table[int(code)] = counts.tolist()
    return table


def joint_code(indices: np.ndarray, codebook_size: int) -> np.ndarray:
    """Combine per-codebook, per-latent indices ``(N, G, L)`` into one code id ``(N,) int64``."""
    flat = indices.reshape(len(indices), -1).astype(np.int64)
    weights = codebook_size ** np.arange(flat.shape[1], dtype=np.int64)
    return flat @ weights
