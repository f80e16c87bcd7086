"""Write a lapo dataset, with per-frame latent-action labels, as a LeRobotDataset (v2.1 layout)
or a Minari dataset (HDF5 storage), so that tools of those ecosystems can train on the labels.

Labels are per frame: ``latent (N, D) float32`` (NaN where the frame has no latent action: the
first k frames of an episode and its last one, see ``lapo.models.lam.LatentActionModel.label``)
and optionally ``codes (N, M) int64`` (-1 there). What each format gets:

* LeRobot: ``action`` = the latent action (0 where undefined), ``latent_action.valid`` (bool),
  ``latent_action.code`` (when codes), ``true_action`` (when the dataset has actions: int64
  ``[1]``, or float32 ``[A]`` for a box action space, with its names), ``next.reward`` /
  ``next.done`` (when it has them); frames as ``observation.image`` mp4 video (mpeg4, lossy:
  colours move by a few levels).
* Minari: one episode per lapo episode with its N frames as the N observations and the N - 1
  latent actions between them (0 where undefined) as the actions (Box, unbounded); rewards,
  terminations (the dataset's ``dones``, else False) and truncations (False); ``infos`` holds the
  per observation ``latent_valid``, ``latent_code`` and ``true_action`` (``(N,)`` ints or
  ``(N, A)`` floats).

Both read back with ``import_lerobot`` / ``import_minari`` as any dataset of the format: their
``action`` is the latent action, so the re-imported dataset's ``actions`` are the latent vectors
``(N, D) float32`` (zeros where undefined) with a box action space over their observed range; the
true actions stay in the export's ``true_action`` column / info and are not imported.

The output directory must not exist (or ``overwrite`` replaces one that lapo made). Each export
is written into a new folder beside it and moved into place when complete, so a failed export
leaves what was on disk as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm.auto import tqdm

from lapo.data.format import DatasetError
from lapo.data.optional import require
from lapo.data.reader import LapoDataset
from lapo.paths import write_json_atomic
from lapo.safety import check_disjoint

#: The LeRobot camera key of exported frames.
CAMERA = "observation.image"
#: Marker file of a lapo export (``overwrite`` replaces only directories that have it).
MARKER = ".lapo-export.json"


def _check_output(out: Path, overwrite: bool, dataset: LapoDataset) -> None:
    check_disjoint(out, [dataset.path])
    if out.exists():
        if not overwrite:
            raise FileExistsError(
                f"{out} exists; pass overwrite=True (--overwrite) to replace an earlier export"
            )
        if not (out / MARKER).is_file():
            raise FileExistsError(f"{out} exists and is not a lapo export; not replacing it")


def _export(
    out: str | os.PathLike, overwrite: bool, dataset: LapoDataset, kind: str,
    write: Callable[[Path], None],
) -> Path:  # fmt: skip
    """``write(folder)`` into a staged folder that becomes ``out`` when it returns (``_staged``);
    returns ``out``."""
    final = Path(out)
    with _staged(final, overwrite, dataset, kind) as staging:
        write(staging)
    return final


@contextmanager
def _staged(out: Path, overwrite: bool, dataset: LapoDataset, kind: str) -> Iterator[Path]:
    """A new folder beside ``out`` to write the export into; it becomes ``out`` (replacing an
    earlier export there) only when the writing succeeded, and is removed when it failed, so a
    failed export leaves what was on disk as it was and never blocks a rerun."""
    _check_output(out, overwrite, dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # as a plain mkdir would make it (mkdtemp: owner only)
    try:
        (staging / MARKER).write_text(json.dumps({"kind": kind, "dataset": str(dataset.path)}))
        yield staging
        _check_output(out, overwrite, dataset)  # again: something may have appeared meanwhile
        if out.exists():  # an earlier export: set aside, then removed
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(staging, out)
            except BaseException:
                os.replace(old / out.name, out)  # put the earlier export back
                raise
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def check_lerobot_frames(dataset: LapoDataset) -> None:
    """Refuse frames a LeRobotDataset's videos cannot hold: other than 1 (grey) or 3 (RGB)
    channels.

    Raises:
        ValueError: the message names the channel count and the Minari export that keeps them.
    """
    channels = dataset.frame_shape[-1]
    if channels not in (1, 3):
        raise ValueError(
            f"{dataset.path}: frames of {channels} channels; a LeRobotDataset's videos hold RGB "
            "(3) or grey (1) frames: export it as minari (raw frames) instead"
        )


def frame_rate(dataset: LapoDataset) -> float:
    """The frame rate of ``dataset``'s frames where its import recorded one (a LeRobotDataset's
    ``fps``; a video import's ``--fps``), else 15, the rate Procgen games render at."""
    source = dataset.manifest.get("source") or {}
    fps = source.get("fps")
    if source.get("kind") in ("lerobot", "video") and fps:
        return float(fps)
    return 15.0


def _check_labels(dataset: LapoDataset, latent: np.ndarray, codes: np.ndarray | None) -> None:
    if latent.ndim != 2 or len(latent) != dataset.num_frames:
        raise ValueError(f"latent labels must be (N={dataset.num_frames}, D), got {latent.shape}")
    if codes is not None and (codes.ndim != 2 or len(codes) != dataset.num_frames):
        raise ValueError(f"codes must be (N={dataset.num_frames}, M), got {codes.shape}")


def _encode_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """``frames (T, H, W, 3 or 1) uint8`` as an mpeg4 video (one channel: grey, as RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 8_000_000
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def export_lerobot(
    dataset: LapoDataset,
    out: str | os.PathLike,
    latent: np.ndarray,
    codes: np.ndarray | None = None,
    *,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``dataset`` with its latent-action labels as a LeRobotDataset (v2.1 layout).

    The export is written beside ``out`` and moved there when complete: a failed export leaves
    ``out`` as it was.

    Args:
        dataset: the lapo dataset, ``(H, W, 3)`` colour or ``(H, W, 1)`` grey frames (written as
            RGB videos, grey in all three channels).
        out: directory to create.
        latent: ``(N, D) float32`` latent action per frame (NaN: none).
        codes: ``(N, M) int64`` code indices per frame (-1: none), or None.
        fps: frame rate written to ``info.json``, the timestamps and the videos; None: the
            dataset's own (``frame_rate``: a LeRobot import's fps, a video import's ``--fps``,
            else 15, the rate Procgen renders at).

    Returns: ``out``.

    Raises:
        ImportError: pyarrow is missing (``pip install 'lapo[formats]'``).
        ValueError: labels of another length than the dataset; ``out`` overlaps the dataset;
            frames with another number of channels than 1 or 3 (RGBA: alpha has no place in
            a video; export those with ``export_minari``); ``fps`` not positive.
        FileExistsError: ``out`` exists (and not ``overwrite`` of an earlier export).
    """
    require("pyarrow", "writing a LeRobotDataset")
    _check_labels(dataset, latent, codes)
    check_lerobot_frames(dataset)
    fps = frame_rate(dataset) if fps is None else float(fps)
    if not 0 < fps < float("inf"):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    return _export(out, overwrite, dataset, "lerobot",
                   lambda staging: _write_lerobot(staging, dataset, latent, codes, fps,
                                                  progress))  # fmt: skip


def _write_lerobot(out: Path, dataset: LapoDataset, latent: np.ndarray, codes: np.ndarray | None,
                   fps: float, progress: bool) -> None:  # fmt: skip
    """The LeRobotDataset files of ``export_lerobot`` in ``out``."""
    pa = require("pyarrow", "writing a LeRobotDataset")
    parquet = require("pyarrow.parquet", "writing a LeRobotDataset")
    h, w, _ = dataset.frame_shape
    dim = latent.shape[1]
    features: dict[str, Any] = {
        CAMERA: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                 "info": {"video.fps": fps, "video.codec": "mpeg4", "video.pix_fmt": "yuv420p"}},
        "action": {"dtype": "float32", "shape": [dim], "names": [f"z{i}" for i in range(dim)]},
        "latent_action.valid": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }  # fmt: skip
    if codes is not None:
        features["latent_action.code"] = {"dtype": "int64", "shape": [codes.shape[1]],
                                          "names": None}  # fmt: skip
    extra = {"actions": "true_action", "rewards": "next.reward", "dones": "next.done"}
    dtypes = {"actions": "int64", "rewards": "float32", "dones": "bool"}
    for field in dataset.fields:
        features[extra[field]] = {"dtype": dtypes[field], "shape": [1], "names": None}
    box = dataset.action_bounds  # true actions (N, A) float32 of a box action space, or None
    if box is not None:
        names = (dataset.manifest["action_space"] or {}).get("names")
        features["true_action"] = {"dtype": "float32", "shape": [len(box[0])], "names": names}
    chunks_size = 1000
    lines = []
    for e, (start, length) in enumerate(tqdm(dataset.episodes.tolist(), desc="episodes",
                                             disable=not progress)):  # fmt: skip
        chunk = e // chunks_size
        rows = slice(start, start + length)
        valid = np.isfinite(latent[rows]).all(axis=1)
        z = np.where(valid[:, None], latent[rows], 0.0).astype(np.float32)
        columns: dict[str, Any] = {
            "action": pa.array(list(z), type=pa.list_(pa.float32(), dim)),
            "latent_action.valid": pa.array(valid),
            "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(length, dtype=np.int64)),
            "episode_index": pa.array(np.full(length, e, np.int64)),
            "index": pa.array(np.arange(start, start + length, dtype=np.int64)),
            "task_index": pa.array(np.zeros(length, np.int64)),
        }
        if codes is not None:
            columns["latent_action.code"] = pa.array(
                list(codes[rows].astype(np.int64)), type=pa.list_(pa.int64(), codes.shape[1])
            )
        for field in dataset.fields:
            values = np.asarray(getattr(dataset, field)[rows])
            kind = pa.list_(pa.float32(), values.shape[1]) if values.ndim == 2 else None
            columns[extra[field]] = pa.array(list(values) if kind else values, type=kind)
        data = out / f"data/chunk-{chunk:03d}/episode_{e:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        parquet.write_table(pa.table(columns), data)
        video = out / f"videos/chunk-{chunk:03d}/{CAMERA}/episode_{e:06d}.mp4"
        _encode_mp4(video, dataset.episode_frames(e), fps)
        lines.append(json.dumps({"episode_index": e, "tasks": ["lapo"], "length": length}))
    meta = out / "meta"
    meta.mkdir()
    (meta / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "lapo"}) + "\n")
    episodes = len(dataset.episodes)
    write_json_atomic(meta / "info.json", {
        "codebase_version": "v2.1", "robot_type": None, "total_episodes": episodes,
        "total_frames": dataset.num_frames, "total_tasks": 1,
        "total_videos": episodes, "total_chunks": -(-episodes // chunks_size),
        "chunks_size": chunks_size, "fps": fps, "splits": {"train": f"0:{episodes}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
                      "episode_{episode_index:06d}.mp4",
        "features": features,
    })  # fmt: skip


def export_minari(
    dataset: LapoDataset,
    out: str | os.PathLike,
    latent: np.ndarray,
    codes: np.ndarray | None = None,
    *,
    dataset_id: str = "lapo/latent-actions-v0",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``dataset`` with its latent-action labels as a Minari dataset (HDF5 storage):
    ``out/data/main_data.hdf5`` and ``out/data/metadata.json``.

    Args:
        dataset, latent, codes: as ``export_lerobot``.
        out: the dataset folder to create (Minari's ``<root>/<dataset_id>``).
        dataset_id: written to the metadata.

    Returns: ``out``.

    Raises:
        ImportError: h5py is missing (``pip install 'lapo[formats]'``).
        DatasetError: an episode of one frame (Minari needs a step).
        ValueError: labels of another length than the dataset; ``out`` overlaps the dataset.
        FileExistsError: ``out`` exists (and not ``overwrite`` of an earlier export).
    """
    require("h5py", "writing a Minari dataset")
    _check_labels(dataset, latent, codes)
    if (dataset.episodes[:, 1] < 2).any():
        raise DatasetError(f"{dataset.path}: an episode of one frame has no step for Minari")
    return _export(out, overwrite, dataset, "minari",
                   lambda staging: _write_minari(staging, dataset, latent, codes, dataset_id,
                                                 progress))  # fmt: skip


def _write_minari(out: Path, dataset: LapoDataset, latent: np.ndarray, codes: np.ndarray | None,
                  dataset_id: str, progress: bool) -> None:  # fmt: skip
    """The Minari dataset files of ``export_minari`` in ``out``."""
    h5py = require("h5py", "writing a Minari dataset")
    folder = out / "data"
    folder.mkdir()
    h, w, c = dataset.frame_shape
    dim = latent.shape[1]
    steps_total = 0
    with h5py.File(folder / "main_data.hdf5", "w", track_order=True) as file:
        for e, (start, length) in enumerate(tqdm(dataset.episodes.tolist(), desc="episodes",
                                                 disable=not progress)):  # fmt: skip
            rows = slice(start, start + length)
            steps = length - 1
            valid = np.isfinite(latent[rows]).all(axis=1)
            z = np.where(valid[:, None], latent[rows], 0.0).astype(np.float32)
            group = file.create_group(f"episode_{e}")
            group.attrs["id"] = e
            group.attrs["total_steps"] = steps
            group.create_dataset("observations", data=dataset.episode_frames(e))
            group.create_dataset("actions", data=z[:steps])
            rewards = (
                np.asarray(dataset.rewards[rows])[:steps]
                if "rewards" in dataset.fields
                else np.zeros(steps, np.float32)
            )
            dones = (
                np.asarray(dataset.dones[rows])[:steps] if "dones" in dataset.fields
                else np.zeros(steps, bool)
            )  # fmt: skip
            group.create_dataset("rewards", data=rewards.astype(np.float64))
            group.create_dataset("terminations", data=dones)
            group.create_dataset("truncations", data=np.zeros(steps, bool))
            infos = group.create_group("infos")
            infos.create_dataset("latent_valid", data=valid)
            if codes is not None:
                infos.create_dataset("latent_code", data=codes[rows].astype(np.int64))
            if "actions" in dataset.fields:
                infos.create_dataset("true_action", data=np.asarray(dataset.actions[rows]))
            steps_total += steps
    box = {
        "type": "Box",
        "dtype": "uint8",
        "shape": [h, w, c],
        "low": np.zeros((h, w, c), int).tolist(),
        "high": np.full((h, w, c), 255).tolist(),
    }
    action = {"type": "Box", "dtype": "float32", "shape": [dim],
              "low": [-3.4e38] * dim, "high": [3.4e38] * dim}  # fmt: skip
    write_json_atomic(folder / "metadata.json", {
        "dataset_id": dataset_id, "total_episodes": len(dataset.episodes),
        "total_steps": steps_total, "data_format": "hdf5",
        "observation_space": json.dumps(box), "action_space": json.dumps(action),
        "minari_version": "0.5.3", "author": "lapo export",
        "description": "latent actions of a LAPO stage-1 model (actions); true actions, "
                       "latent codes and validity in infos",
    })  # fmt: skip
