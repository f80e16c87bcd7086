"""``lapo data export``: a dataset with its stage-1 latent-action labels (IDM outputs) written as
a LeRobotDataset or a Minari dataset (``lapo.data.export_formats``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from lapo.data import open_dataset
from lapo.data.reader import LapoDataset

if TYPE_CHECKING:
    import torch

EXPORT_FORMATS = ("lerobot", "minari")


def latent_labels(lam, dataset: LapoDataset, progress: bool = False) -> tuple[np.ndarray, ...]:
    """The IDM's latent action of every frame (paper section 4.1: z_t = IDM(o_{t-k}..o_{t+1})).

    Args:
        lam: a ``LatentActionModel`` (``lapo.load.load_lam``).
        dataset: frames of the model's shape.

    Returns:
        ``latent (N, D) float32``, NaN where a frame has no latent action (an episode's first k
        frames and its last one, and episodes shorter than k + 2), and ``codes (N, G * L)
        int64`` (-1 there), or None without a discrete quantizer.

    Raises:
        ValueError: frames of another shape than the model's (``LatentActionModel.label``).
    """
    k = lam.context
    latent = np.full((dataset.num_frames, lam.latent_dim), np.nan, np.float32)
    codes = None
    episodes = dataset.episodes.tolist()
    for e, (start, length) in enumerate(tqdm(episodes, desc="labelling", disable=not progress)):
        if length < k + 2:
            continue
        z, c = lam.label(dataset.episode_frames(e))  # (length - k - 1, D), (.., G, L)
        latent[start + k : start + length - 1] = z
        if c is not None:
            if codes is None:
                codes = np.full((dataset.num_frames, c[0].size), -1, np.int64)
            codes[start + k : start + length - 1] = c.reshape(len(c), -1)
    return latent, codes


def export_latent_actions(
    data_dir: str | os.PathLike,
    lam_dir: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str,
    *,
    overwrite: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    fps: float | None = None,
) -> Path:
    """Label ``data_dir`` with the stage-1 model in ``lam_dir`` and write it to ``out`` as
    ``fmt`` (``lerobot`` or ``minari``). The IDM computes on ``device`` (None:
    ``lapo.device.default_device``). ``fps``: the LeRobotDataset's frame rate (None: the
    dataset's own, ``lapo.data.export_formats.frame_rate``).

    Raises:
        ValueError: an unknown format; frames of another shape than the model's; ``fps`` given
            for a Minari export (it has no frame rate); frames the format cannot hold.
        ImportError: pyarrow / h5py missing (``pip install 'lapo[formats]'``).
        FileExistsError: ``out`` exists (``overwrite`` replaces an earlier export only).
        lapo.checkpoint.CheckpointError: ``lam_dir`` holds no stage-1 checkpoint.
    """
    from lapo.data.export_formats import check_lerobot_frames, export_lerobot, export_minari
    from lapo.load import load_lam

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fps is not None and fmt != "lerobot":
        raise ValueError(f"fps (--fps) sets a LeRobotDataset's frame rate; a {fmt} export has none")
    if fps is not None and not 0 < fps < float("inf"):  # before the labelling pass
        raise ValueError(f"fps (--fps) must be a finite number > 0, got {fps}")
    lam, _ = load_lam(lam_dir, device)
    with open_dataset(data_dir) as dataset:
        if fmt == "lerobot":  # what the format cannot hold, before the labelling
            check_lerobot_frames(dataset)
            latent, codes = latent_labels(lam, dataset, progress)
            return export_lerobot(dataset, out, latent, codes, fps=fps, overwrite=overwrite,
                                  progress=progress)  # fmt: skip
        latent, codes = latent_labels(lam, dataset, progress)
        return export_minari(dataset, out, latent, codes, overwrite=overwrite, progress=progress)
