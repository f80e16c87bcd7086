"""Latent-action quality of a trained latent action model (``lapo probe-lam``), paper section 6.3.

How much of the true action the IDM's latent actions carry, measured on held-out episodes that
were never trained on (true actions are used here only, never in training): linear and MLP
probe accuracy, NMI between joint codes and actions, the per-code action histogram, and the
same MLP probe on the 4x-pooled frame difference o_{t+1} - o_t as a reference without learning.

``train_lam`` calls :func:`latent_quality` on its own held-out split at the end;
:func:`probe_lam` runs it for a saved model on any labelled dataset, typically a second
recording of the same game: the probe's accuracy depends strongly on how many windows it is
trained on (on a miner random-policy recording the frame-difference MLP scores 0.13 with 4,096
windows, 0.20 with 16,384 and 0.24 with 65,536), and one run's held-out split holds only a few
thousand windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lapo.checkpoint import read_meta
from lapo.config import LAMConfig
from lapo.data import WindowIndex, manifest_digest, open_dataset, split_windows
from lapo.device import autocast
from lapo.eval.probes import (
    code_action_histogram,
    joint_code,
    normalized_mutual_information,
    probe_accuracy,
    probe_r2,
)
from lapo.load import checkpoint_path, load_lam
from lapo.models.lam import LatentActionModel, frames_to_float
from lapo.paths import write_json_atomic


def window_batch(index: WindowIndex, windows, device: torch.device) -> torch.Tensor:
    """Window numbers -> ``(B, k+2, C, H, W) float`` in [-0.5, 0.5] on ``device``."""
    frames = torch.from_numpy(index.read(np.asarray(windows)))  # (B, k+2, H, W, C) uint8
    return frames_to_float(frames.to(device))


@torch.no_grad()
def latent_quality(
    model: LatentActionModel,
    index: WindowIndex,
    config: LAMConfig,
    top_codes: int = 32,
    samples: int | None = None,
) -> dict:
    """True-action probes on ``samples`` windows of ``index`` (default ``config.probe_samples``).

    The windows are drawn reproducibly (``labelled_subset``, seed 123); each probe trains on one
    half and is tested on the other (``lapo.eval.probes.probe_accuracy``).

    Returns a JSON-able dict: ``probe_linear_accuracy``, ``probe_mlp_accuracy``,
    ``frame_difference_mlp_accuracy`` (the same MLP probe on the 4x-pooled o_{t+1} - o_t: what
    the latents should beat), ``majority_accuracy``, ``nmi`` (joint code vs action, discrete
    quantizers only), ``code_action_histogram`` (the ``top_codes`` most used joint codes),
    ``distinct_codes``, ``num_samples``; with fewer than 4 held-out windows only
    ``num_samples`` and ``probes_skipped`` (why, in a sentence). Continuous actions (a box
    action space): instead ``probe_linear_r2``, ``probe_mlp_r2`` and
    ``frame_difference_mlp_r2``, the R^2 of
    regression probes on the actions scaled to ``[-1, 1]`` (``lapo.eval.probes.probe_r2``).

    Raises:
        ValueError: the dataset has no true actions.
    """

    dataset = index.dataset
    if not dataset.has_actions:
        raise ValueError(f"{dataset.path}: latent-quality probes need true actions; it has none")
    count = min(samples or config.probe_samples, len(index))
    if count < 4:  # each probe trains on half and tests on the other half
        why = (
            f"the probed episodes hold {len(index)} transitions"
            if len(index) < 4
            else f"{count} samples were asked for"
        )
        return {
            "num_samples": count,
            "probes_skipped": f"No action probes: {why}, the probes need at least 4 (import "
            "more frames or episodes).",
        }
    windows = np.sort(index.labelled_subset(count, seed=123))
    actions = np.asarray(dataset.actions[index.frame_index(windows)])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    latents, codes, diffs = [], [], []
    for start in range(0, len(windows), 256):
        frames = window_batch(index, windows[start : start + 256], device)
        with autocast(device, config.bf16):
            latent = model.idm(frames)
            vq = model.quantizer(latent)
        latents.append(latent.float().cpu())
        if vq.indices is not None:
            codes.append(vq.indices.cpu())
        # Reference without any learning: the 4x-pooled frame difference o_{t+1} - o_t.
        diff = F.avg_pool2d(frames[:, -1].float() - frames[:, -2].float(), 4)  # (B, C, H/4, W/4)
        diffs.append(diff.flatten(1).cpu())
    model.train(was_training)
    if dataset.continuous_actions:  # R^2 of regression probes on actions scaled to [-1, 1]
        low, high = dataset.action_bounds
        unit = 2.0 * (actions.astype(np.float32) - low) / (high - low) - 1.0
        linear, mlp = probe_r2(torch.cat(latents).numpy(), unit)
        result = {"num_samples": len(windows), "probe_linear_r2": linear, "probe_mlp_r2": mlp}
        if codes:
            result["distinct_codes"] = int(len(np.unique(joint_code(
                torch.cat(codes).numpy(), config.codebook_size))))  # fmt: skip
        result["frame_difference_mlp_r2"] = probe_r2(torch.cat(diffs).numpy(), unit)[1]
        return result
    num_actions = dataset.num_actions or int(actions.max()) + 1
    probe = probe_accuracy(torch.cat(latents).numpy(), actions, num_actions)
    result = {
        "num_samples": len(windows),
        "probe_linear_accuracy": probe.linear_accuracy,
        "probe_mlp_accuracy": probe.mlp_accuracy,
        "majority_accuracy": probe.majority_accuracy,
    }
    if codes:
        joint = joint_code(torch.cat(codes).numpy(), config.codebook_size)
        result["nmi"] = normalized_mutual_information(joint, actions)
        used, counts = np.unique(joint, return_counts=True)
        top = used[np.argsort(-counts)[:top_codes]]
        hist = code_action_histogram(joint, actions, num_actions)
        result["code_action_histogram"] = {str(c): hist[int(c)] for c in top}
        result["distinct_codes"] = int(len(used))
    baseline = probe_accuracy(torch.cat(diffs).numpy(), actions, num_actions)
    result["frame_difference_mlp_accuracy"] = baseline.mlp_accuracy
    return result


def probe_lam(
    lam: str | Path,
    data_dir: str | Path,
    *,
    samples: int = 32768,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Latent-quality probes of a trained latent action model on a labelled dataset.

    When ``data_dir`` is the dataset the model was trained on (same manifest), only its held-out
    episodes (the training run's own split) are used, so no trained-on window is probed;
    otherwise every episode is.

    Args:
        lam: run directory or checkpoint of ``lapo train-lam``.
        data_dir: dataset with true actions and the model's frame shape ``(H, W, C)``.
        samples: windows drawn for the probes (at most all of them); half train each probe.
        out: JSON file to write the result to (atomically); None: do not write.
        device: where the IDM labels (None: ``lapo.device.default_device``).

    Returns:
        :func:`latent_quality`'s dict plus ``data`` and ``held_out_split`` (True when only the
        training run's held-out episodes were used).

    Raises:
        FileNotFoundError: no checkpoint at ``lam``.
        ValueError: ``samples < 4``, ``out``'s directory does not exist, the dataset has no true
            actions, or its frames are not the shape the model was trained on.
        lapo.data.DatasetError: invalid data or no window of k + 2 frames.
    """

    if samples < 4:
        raise ValueError(f"samples must be >= 4 (two per probe half), got {samples}")
    if out is not None and not Path(out).parent.is_dir():
        raise ValueError(f"cannot write {out}: its directory {Path(out).parent} does not exist")
    dataset = open_dataset(data_dir)
    meta = read_meta(checkpoint_path(lam))
    if tuple(meta["frame_shape"]) != tuple(dataset.frame_shape):
        raise ValueError(
            f"{dataset.path} has frames of shape {tuple(dataset.frame_shape)}, but the model "
            f"was trained on {tuple(meta['frame_shape'])}"
        )
    model, config = load_lam(lam, device)  # latent_quality refuses data without true actions
    held_out = meta.get("data_manifest_sha256") == manifest_digest(dataset)
    index = (
        split_windows(dataset, config.context, config.test_fraction, config.seed)[1]
        if held_out
        else WindowIndex(dataset, config.context)
    )
    result = latent_quality(model, index, config, samples=samples)
    result |= {"data": str(dataset.path), "held_out_split": held_out}
    if out is not None:
        write_json_atomic(Path(out), result)
    return result


def summary_line(result: dict) -> str:
    """One line of the probe figures of a :func:`latent_quality` result, for the terminal."""
    names = {
        "probe_mlp_accuracy": "MLP probe",
        "probe_linear_accuracy": "linear probe",
        "frame_difference_mlp_accuracy": "frame-difference MLP",
        "majority_accuracy": "majority class",
        "nmi": "NMI",
        "probe_mlp_r2": "MLP probe R^2",
        "probe_linear_r2": "linear probe R^2",
        "frame_difference_mlp_r2": "frame-difference MLP R^2",
    }
    figures = [f"{name} {result[k]:.3f}" for k, name in names.items() if k in result]
    if "probes_skipped" in result:
        figures.append(result["probes_skipped"])
    return f"{result['num_samples']} windows: " + ", ".join(figures)
