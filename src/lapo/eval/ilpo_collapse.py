"""ILPO's collapse diagnostic (LAPO paper appendix A.4, Figure 9).

On one Procgen level ILPO's forward model gives each latent its own kind of transition; on the
full level distribution the LAPO authors found that the same latent attains the minimum of
L_min for nearly every transition, so the latent policy carries no information about the action.
This module measures that on held-out transitions: how often each latent is the argmin
(``argmin_fraction``, their exponentiated entropy ``effective_latents``), the latent policy's
mean mass per latent, and, when the data has true actions, how well the argmin latent predicts
the action (a latent -> most frequent action map fitted on one half, scored on the other,
against the majority-action baseline; NMI). Figures: the argmin frequencies
(``plot_latent_collapse``) and the forward model's prediction under every latent
(``lapo.eval.plots.plot_fdm_predictions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from lapo.data import WindowIndex
from lapo.eval.plots import _array, _figure, _save, plot_fdm_predictions
from lapo.eval.probes import normalized_mutual_information
from lapo.models.ilpo import ILPOModel, transition_errors

#: Windows drawn for the diagnostic: the seed of ``WindowIndex.labelled_subset``.
DIAGNOSTIC_SEED = 123


@torch.no_grad()
def argmin_latents(
    model: ILPOModel, index: WindowIndex, windows: np.ndarray, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """z* = argmin_z ||o_{t+1} - G(o_t, z)||^2 and pi(z | o_t) for windows of ``index`` (k=0).

    Returns: ``(argmin (N,) int64, latent policy probabilities (N, K) float32)``.
    """
    device = next(model.parameters()).device
    argmin, probs = [], []
    for start in range(0, len(windows), batch_size):
        frames = torch.from_numpy(index.read(windows[start : start + batch_size])).to(device)
        predictions, logits = model(frames[:, 0])  # (B, K, C, H, W), (B, K)
        nxt = frames[:, -1].movedim(-1, -3).float().div(255.0).sub(0.5)
        argmin.append(transition_errors(predictions, nxt).argmin(1).cpu().numpy())
        probs.append(torch.softmax(logits.float(), -1).cpu().numpy())
    return np.concatenate(argmin), np.concatenate(probs)


def argmin_action_accuracy(latents: np.ndarray, actions: np.ndarray) -> tuple[float, float]:
    """Held-out accuracy of the map latent -> most frequent action, fitted on the first half of
    ``(latents, actions)`` (both ``(N,) int``) and scored on the second; and the accuracy of
    always predicting the first half's most frequent action (the chance level to beat)."""
    half = len(latents) // 2
    if half < 1:
        raise ValueError(f"need at least 2 transitions, got {len(latents)}")
    fit_z, fit_a, test_z, test_a = latents[:half], actions[:half], latents[half:], actions[half:]
    majority = int(np.bincount(fit_a).argmax())
    mapping = {int(z): int(np.bincount(fit_a[fit_z == z]).argmax()) for z in np.unique(fit_z)}
    predicted = np.array([mapping.get(int(z), majority) for z in test_z])
    return float((predicted == test_a).mean()), float((test_a == majority).mean())


def collapse_diagnostic(model: ILPOModel, index: WindowIndex, samples: int) -> dict:
    """The appendix A.4 diagnostic on ``samples`` windows of ``index`` (drawn with seed 123).

    Returns a JSON-able dict: ``num_latents``, ``samples``, ``argmin_counts`` and
    ``argmin_fraction`` (per latent), ``argmin_max_fraction`` (share of the most frequent
    argmin: 1.0 is complete collapse), ``effective_latents`` (exp of the entropy of the argmin
    frequencies, in [1, K]), ``policy_mass`` (mean pi(z | o_t) per latent); with true discrete
    actions also
    ``argmin_action_accuracy``, ``majority_accuracy``, ``argmin_action_nmi`` and
    ``argmin_action_histogram`` (``{latent: counts per action}``).
    """
    windows = index.labelled_subset(min(samples, len(index)), seed=DIAGNOSTIC_SEED)
    argmin, probs = argmin_latents(model, index, windows)
    k = model.num_latents
    counts = np.bincount(argmin, minlength=k)
    fraction = counts / counts.sum()
    nonzero = fraction[fraction > 0]
    result = {
        "num_latents": k,
        "samples": len(windows),
        "argmin_counts": counts.tolist(),
        "argmin_fraction": fraction.tolist(),
        "argmin_max_fraction": float(fraction.max()),
        "effective_latents": float(np.exp(-(nonzero * np.log(nonzero)).sum())),
        "policy_mass": probs.mean(0).tolist(),
    }
    dataset = index.dataset
    if dataset.has_actions and not dataset.continuous_actions and len(windows) >= 2:
        actions = np.asarray(dataset.actions[index.frame_index(windows)]).astype(np.int64)
        accuracy, majority = argmin_action_accuracy(argmin, actions)
        result["argmin_action_accuracy"] = accuracy
        result["majority_accuracy"] = majority
        result["argmin_action_nmi"] = normalized_mutual_information(argmin, actions)
        num_actions = int(actions.max()) + 1
        result["argmin_action_histogram"] = {
            int(z): np.bincount(actions[argmin == z], minlength=num_actions).tolist()
            for z in np.unique(argmin)
        }
    return result


def plot_latent_collapse(
    fractions: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str | None = None,
    policy_mass: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Bar chart of how often each latent attains the minimum of L_min (appendix A.4).

    Args:
        fractions: ``{run label: (K,) fractions summing to 1}``, e.g. single level vs all levels;
            every run must have the same K.
        policy_mass: optional ``{run label: (K,) mean pi(z | o_t)}`` drawn as markers over each
            run's bars (a latent policy that collapsed puts all its mass on one latent).

    Returns: the PNG path. Raises: ValueError for no runs, an empty run or differing K.
    """
    if not fractions:
        raise ValueError("plot_latent_collapse needs at least one run")
    arrays = {name: _array(name, f, 1, np.float64) for name, f in fractions.items()}
    k = {len(a) for a in arrays.values()}
    if len(k) != 1:
        raise ValueError(f"every run must have the same number of latents, got {sorted(k)}")
    k = k.pop()
    fig = _figure(max(5.0, 0.45 * k + 2), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(arrays)
    for i, (name, frac) in enumerate(arrays.items()):
        x = np.arange(k) + (i - (len(arrays) - 1) / 2) * width
        ax.bar(x, frac, width, color=f"C{i}", label=f"{name}: argmin share")
        if policy_mass and name in policy_mass:
            mass = _array(f"policy_mass[{name!r}]", policy_mass[name], 1, np.float64)
            if len(mass) != k:
                raise ValueError(f"policy_mass[{name!r}] has {len(mass)} latents, expected {k}")
            ax.plot(x, mass, "v", color=f"C{i}", mec="black", ms=6,
                    label=f"{name}: mean pi(z | o_t)")  # fmt: skip
    ax.axhline(1.0 / k, color="grey", ls=":", lw=1, label=f"uniform (1/{k})")
    ax.set(xticks=np.arange(k), xlabel="latent z", ylim=(0, 1.06),
           ylabel="share of held-out transitions",
           title=title or "ILPO: which latent attains min_z ||o_(t+1) - G(o_t, z)||^2")  # fmt: skip
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


@torch.no_grad()
def write_diagnostic_figures(
    model: ILPOModel, index: WindowIndex, diagnostic: dict, directory: Path, rows: int = 4
) -> dict[str, Path]:
    """``collapse.png`` (argmin frequencies) and ``fdm_latents.png`` (o_t, o_{t+1} and G's
    prediction under every latent for ``rows`` held-out transitions) in ``directory``."""
    device = next(model.parameters()).device
    windows = index.labelled_subset(min(rows, len(index)), seed=DIAGNOSTIC_SEED + 1)
    frames = index.read(windows)  # (M, 2, H, W, C) uint8
    predictions, _ = model(torch.from_numpy(frames[:, 0]).to(device))  # (M, K, C, H, W)
    images = ((predictions.float() + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)
    images = images.movedim(-3, -1).cpu().numpy()  # (M, K, H, W, C)
    labels = [f"z={z} ({100 * f:.0f}%)" for z, f in enumerate(diagnostic["argmin_fraction"])]
    return {
        "collapse": plot_latent_collapse(
            {"held-out transitions": diagnostic["argmin_fraction"]},
            directory / "collapse.png",
            policy_mass={"held-out transitions": diagnostic["policy_mass"]},
        ),
        "fdm_latents": plot_fdm_predictions(
            frames[:, 0],
            frames[:, 1],
            images,
            labels,
            directory / "fdm_latents.png",
            title="ILPO forward model: prediction of o_(t+1) under every latent "
            "(share of held-out argmins)",
        ),
    }
