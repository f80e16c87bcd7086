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

import copy
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


def r2_score(predictions, targets) -> float:
    """Coefficient of determination ``1 - sum (y - y_hat)^2 / sum (y - mean(y))^2`` over all
    dimensions, the mean taken per dimension; 1 is perfect, 0 is predicting the mean.

    Args:
        predictions, targets: ``(N, A)`` or ``(N,)`` float tensors or arrays, N >= 2.
    """
    y = torch.as_tensor(targets).double()
    y_hat = torch.as_tensor(predictions).double()
    total = ((y - y.mean(0)) ** 2).sum()
    return float(1.0 - ((y - y_hat) ** 2).sum() / total) if total > 0 else float("nan")


def fit_classifier(
    net: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    val_inputs: torch.Tensor,
    val_targets: torch.Tensor,
    *,
    lr: float,
    batch_size: int,
    updates: int,
    eval_every: int,
    patience: int,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    regression: bool = False,
) -> dict:
    """Adam on cross-entropy with early stopping: ends with the weights of the best validation
    loss. Hand-written because it is the probe and decoder protocol (a few lines of torch).

    With ``regression`` the loss is the mean squared error to ``(N, A) float`` targets (the
    continuous actions scaled to ``[-1, 1]``, ``lapo.stages.decode``) and the returned
    ``validation_r2`` (``r2_score``) replaces ``validation_accuracy``.

    Args:
        net: ``(N, ...) -> (N, num_classes)`` logits; trained in place, left in eval mode.
        inputs, targets: training inputs and ``(N,) int64`` classes; minibatches of
            ``batch_size`` drawn with replacement by ``generator`` (``>= N``: full batch).
        val_inputs, val_targets: validation set for early stopping (never trained on).
        updates: maximum optimizer steps; every ``eval_every`` steps the validation loss is
            computed; after ``patience`` evaluations without improvement training stops.

    Returns:
        ``{validation_loss, validation_accuracy, best_update, updates}`` of the kept weights.
    """
    lossf = nn.functional.mse_loss if regression else nn.functional.cross_entropy
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    best = (float("inf"), copy.deepcopy(net.state_dict()), 0)
    since_best, update = 0, 0
    full_batch = batch_size >= len(inputs)
    with torch.enable_grad():  # callers may be inside no_grad
        for update in range(1, updates + 1):
            if full_batch:
                x, y = inputs, targets
            else:
                idx = torch.randint(len(inputs), (batch_size,), generator=generator)
                x, y = inputs[idx], targets[idx]
            loss = lossf(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if update % eval_every and update != updates:
                continue
            with torch.no_grad():
                net.eval()
                val = float(lossf(net(val_inputs), val_targets))
                net.train()
            if val < best[0]:
                best, since_best = (val, copy.deepcopy(net.state_dict()), update), 0
            else:
                since_best += 1
                if since_best >= patience:
                    break
    net.load_state_dict(best[1])
    net.eval()
    with torch.no_grad():
        if regression:
            score = {"validation_r2": r2_score(net(val_inputs), val_targets)}
        else:
            accuracy = float((net(val_inputs).argmax(-1) == val_targets).float().mean())
            score = {"validation_accuracy": accuracy}
    return {
        "validation_loss": best[0],
        **score,
        "best_update": best[2],
        "updates": update,
    }


#: Standardized probe inputs are clipped to this many training standard deviations.
CLIP_STD = 10.0


def standardize(features: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Probe inputs: features centred and scaled by their mean and standard deviation on the
    training samples, clipped to ``+-CLIP_STD``; features constant on the training samples
    (standard deviation <= 1e-6) are dropped.

    A probe learns nothing from a feature that never varies in training, and dividing its
    held-out changes by a near-zero deviation blew the scores up (pooled frame differences of a
    static background, 0 on every training frame: an R^2 of -2e6). Hand-written: three lines of
    numpy, where a scikit-learn scaler would add a dependency and not drop or clip.

    Args:
        features: ``(N, D) float``.
        train: indices (or a boolean mask) of the training samples.

    Returns:
        ``(N, D') float32``, ``D'`` the features that vary in training (at least one column:
        zeros when none varies).
    """
    mean, std = features[train].mean(0), features[train].std(0)
    varies = std > 1e-6
    if not varies.any():
        return np.zeros((len(features), 1), np.float32)
    scaled = (features[:, varies] - mean[varies]) / std[varies]
    return np.clip(scaled, -CLIP_STD, CLIP_STD).astype(np.float32)


def probe_accuracy(
    latents: np.ndarray, actions: np.ndarray, num_actions: int, *, seed: int = 0, steps: int = 2000
) -> ProbeResult:
    """Train linear and MLP (128, 128) probes latent -> true action; test on a held-out half.

    Each probe trains full-batch on 80% of the training half and stops early on the other 20%
    (validation loss every 5 steps, patience 20), starting from the class prior (last layer's
    weights zero, its bias the log frequencies), with Adam at 3e-3 and L2 weight 1e-2. Without
    this the MLP memorizes a few thousand samples and tests below the majority class (coinrun
    latents: MLP 0.22 against a majority of 0.26 before; 0.30 with early stopping).

    Args:
        latents: ``(N, D) float`` latent actions (pre- or post-quantization).
        actions: ``(N,) int`` true actions in ``[0, num_actions)``.
        seed: split and initialization seed.
        steps: maximum full-batch Adam steps per probe.

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
    fit, val = train[: max(1, int(0.8 * half))], train[max(1, int(0.8 * half)) :]
    if len(val) == 0:  # tiny inputs: validate on the training samples
        val = fit
    x = torch.from_numpy(standardize(latents, train))
    y = torch.from_numpy(actions)
    dim = x.shape[1]
    results = []
    with torch.random.fork_rng():  # seeded probes, without touching the caller's RNG stream
        torch.manual_seed(seed)
        probes = (nn.Linear(dim, num_actions),
                  nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                nn.Linear(128, num_actions)))  # fmt: skip
        prior = torch.bincount(y[fit], minlength=num_actions).double() / len(fit)
        for model in probes:
            last = model if isinstance(model, nn.Linear) else model[-1]
            with torch.no_grad():  # start at the prior: early stopping can only improve on it
                last.weight.zero_()
                last.bias.copy_(torch.log(prior.clamp_min(1e-4)).float())
            fit_classifier(
                model, x[fit], y[fit], x[val], y[val], lr=3e-3, batch_size=len(fit),
                updates=steps, eval_every=5, patience=20,
                generator=torch.Generator().manual_seed(seed), weight_decay=1e-2,
            )  # fmt: skip
            with torch.no_grad():
                predicted = model(x[test]).argmax(1)
            results.append(float((predicted == y[test]).float().mean()))
    majority = np.bincount(actions[train], minlength=num_actions).argmax()
    return ProbeResult(
        results[0], results[1], float((actions[test] == majority).mean()), len(train), len(test)
    )


def probe_r2(
    latents: np.ndarray, actions: np.ndarray, *, seed: int = 0, steps: int = 2000
) -> tuple[float, float]:
    """Continuous-action probes: linear and MLP (128, 128) regressors latent -> action, trained
    by mean squared error on a training half (80% fit, 20% early stopping, as
    ``probe_accuracy``), scored by R^2 (``r2_score``) on the held-out half.

    Args:
        latents: ``(N, D) float``; actions: ``(N, A) float``, ideally scaled to ``[-1, 1]``.

    Returns:
        ``(linear_r2, mlp_r2)``.

    Raises:
        ValueError: fewer than 4 samples, or mismatched lengths.
    """
    latents = np.asarray(latents, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
    if len(latents) != len(actions) or len(latents) < 4:
        raise ValueError(f"need >= 4 (latent, action) pairs of equal count, got {len(latents)} "
                         f"latents and {len(actions)} actions")  # fmt: skip
    perm = np.random.default_rng(seed).permutation(len(latents))
    half = len(perm) // 2
    train, test = perm[:half], perm[half:]
    fit, val = train[: max(1, int(0.8 * half))], train[max(1, int(0.8 * half)) :]
    if len(val) == 0:
        val = fit
    x, y = torch.from_numpy(standardize(latents, train)), torch.from_numpy(actions)
    dim, out = x.shape[1], y.shape[1]
    scores = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        probes = (nn.Linear(dim, out),
                  nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                nn.Linear(128, out)))  # fmt: skip
        for model in probes:
            fit_classifier(
                model, x[fit], y[fit], x[val], y[val], lr=3e-3, batch_size=len(fit),
                updates=steps, eval_every=5, patience=20,
                generator=torch.Generator().manual_seed(seed), weight_decay=1e-2, regression=True,
            )  # fmt: skip
            with torch.no_grad():
                scores.append(r2_score(model(x[test]), y[test]))
    return scores[0], scores[1]


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
