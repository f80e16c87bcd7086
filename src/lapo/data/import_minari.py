"""Import a Minari dataset (its HDF5 storage) as a lapo dataset.

The reader follows Minari's on-disk layout (Minari 0.4 / 0.5, ``data_format: hdf5``), not the
``minari`` package (which is not needed)::

    <dataset>/data/metadata.json     total_episodes, total_steps, data_format, observation_space
                                     and action_space (gymnasium spaces serialized as JSON text)
    <dataset>/data/main_data.hdf5    groups episode_0, episode_1, ... each with observations
                                     (T + 1 of them; a group of them for Dict spaces), actions
                                     (T), rewards, terminations, truncations (T), attrs id,
                                     total_steps, seed

``root`` may be ``<dataset>`` or its ``data`` folder. Observations must be images (``(T + 1, H,
W, C)`` uint8, C = 1, 3 or 4; channels-first is transposed; a Dict space's image entry is chosen
with ``observation_key``). Each Minari episode becomes one lapo episode of its T + 1
observations, resized like video. The actions become the lapo ``actions`` field: a Discrete
space's as ints, a Box space's as ``(N, D) float32`` (flattened) with a box action space whose
bounds are the Box's where finite (and, where the data exceed them, widened to the data), else
the observed per-dimension minimum and maximum (``lapo.data.format.box_action_space``). The final
observation has no action of its own and repeats the last one (it has no successor frame, so no
transition uses it). Rewards and ``terminations`` become ``rewards`` and ``dones`` (the final
observation: 0 and False). Datasets imported before kept Box actions in a side file
``continuous_actions.npy`` without ``actions``; they still read as they did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lapo.config import VideoImportConfig
from lapo.data.format import DatasetError, box_action_space
from lapo.data.import_video import resize_frames
from lapo.data.optional import require
from lapo.data.writer import DEFAULT_SHARD_FRAMES, DatasetWriter, check_output_dir

MAIN_FILE = "main_data.hdf5"
METADATA = "metadata.json"


def minari_data_dir(root: str | os.PathLike) -> Path:
    """The folder holding ``main_data.hdf5`` and ``metadata.json``: ``root`` or ``root/data``.

    Raises:
        DatasetError: neither holds both files.
    """
    root = Path(root)
    for folder in (root, root / "data"):
        if (folder / MAIN_FILE).is_file() and (folder / METADATA).is_file():
            return folder
    raise DatasetError(
        f"{root}: no {MAIN_FILE} + {METADATA} in it or in its data/ folder (expected a Minari "
        "dataset with HDF5 storage)"
    )


def _space(metadata: dict, name: str) -> dict:
    value = metadata.get(name)
    return json.loads(value) if isinstance(value, str) else (value or {})


def _images(node, key: str | None, where: str) -> np.ndarray:
    """The image observations of one episode: ``(T + 1, H, W, C) uint8``."""
    h5py = require("h5py", "reading a Minari dataset")
    if isinstance(node, h5py.Group):
        keys = sorted(node.keys())
        if key is None:
            images = [k for k in keys if isinstance(node[k], h5py.Dataset) and node[k].ndim == 4]
            if len(images) != 1:
                raise DatasetError(
                    f"{where}: observations are a dict ({', '.join(keys)}); choose the image "
                    "entry with --camera KEY"
                )
            key = images[0]
        if key not in node:
            raise DatasetError(f"{where}: no observation {key!r}; it has {', '.join(keys)}")
        node = node[key]
    obs = np.asarray(node[()])
    if obs.ndim == 4 and obs.shape[-1] not in (1, 3, 4) and obs.shape[1] in (1, 3, 4):
        obs = obs.transpose(0, 2, 3, 1)  # channels-first -> (T, H, W, C)
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[-1] not in (1, 3, 4):
        raise DatasetError(
            f"{where}: observations of {obs.dtype} {obs.shape}; expected images (T + 1, H, W, C) "
            "uint8 with C = 1, 3 or 4"
        )
    if obs.shape[-1] == 1:
        obs = np.repeat(obs, 3, axis=-1)
    return obs[..., :3]


def _with_final(values: np.ndarray, fill) -> np.ndarray:
    """T per-step values -> T + 1 (the final observation gets ``fill``, or the last value)."""
    last = values[-1:] if fill is None else np.full((1, *values.shape[1:]), fill, values.dtype)
    return np.concatenate([values, last])


def _box_bounds(space: dict, dim: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A serialized Box's ``low`` / ``high`` flattened to ``(D,)`` float64 (a scalar broadcast);
    None where absent or not of D values."""
    bounds = []
    for key in ("low", "high"):
        try:
            value = np.asarray(space[key], np.float64).reshape(-1)
            bounds.append(np.broadcast_to(value, (dim,)) if value.size in (1, dim) else None)
        except (KeyError, TypeError, ValueError):
            bounds.append(None)
    return bounds[0], bounds[1]


def _box_space(action_space: dict, actions: list[np.ndarray], where: Path) -> dict[str, Any]:
    """The lapo box space of the episodes' ``(T, D) float32`` actions under Minari's Box."""
    dims = {a.shape[1] for a in actions}
    if len(dims) != 1:
        raise DatasetError(f"{where}: action vectors of different sizes {sorted(dims)}")
    stacked = np.concatenate(actions)  # (N, D) float32
    bad = np.flatnonzero(~np.isfinite(stacked).all(axis=1))
    if len(bad):
        raise DatasetError(f"{where}: {len(bad)} action(s) not finite, e.g. {stacked[bad[0]]}")
    data_min, data_max = stacked.min(0), stacked.max(0)
    space = box_action_space(data_min, data_max, *_box_bounds(action_space, stacked.shape[1]))
    # Actions outside the Box's own bounds (a dataset recorded without clipping) widen the
    # bounds to the data: the writer keeps actions within the bounds, and nothing is lost.
    space["low"] = np.minimum(np.float32(space["low"]), data_min).tolist()
    space["high"] = np.maximum(np.float32(space["high"]), data_max).tolist()
    return space


def import_minari(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    observation_key: str | None = None,
    config: VideoImportConfig | None = None,
    overwrite: bool = False,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Import the Minari dataset at ``root`` (HDF5 storage) into a new lapo dataset.

    Args:
        root: the dataset folder or its ``data`` folder.
        out: dataset directory to create.
        observation_key: the image entry of a Dict observation space (None: the only image).
        config: resolution and resize mode (frames already at the resolution are kept as they
            are); ``fps``, ``frame_stride`` and ``clip_frames`` must stay unset.
        overwrite, shard_frames, progress: as ``lapo.data.import_video.import_videos``.

    Returns:
        The manifest; its source is ``{"kind": "minari", "root", "episodes", "action":
        "discrete" | "continuous", ...}``; with a Box action space its action space is ``{"type":
        "box", "shape": [D], "low", "high"}`` and ``actions`` are ``(N, D) float32``.

    Raises:
        ImportError: h5py is not installed (``pip install 'lapo[formats]'``).
        DatasetError: not a Minari HDF5 dataset; observations that are not images; an action
            space other than Discrete or Box; NaN or infinite Box actions.
        ValueError: sampling options in ``config``; ``out`` inside ``root``.
        FileExistsError: ``out`` exists and not ``overwrite``.
    """
    h5py = require("h5py", "reading a Minari dataset")
    config = config or VideoImportConfig()
    if config.fps is not None or config.frame_stride != 1 or config.clip_frames is not None:
        raise ValueError("Minari import keeps every step: fps, frame_stride, clip_frames unset")
    folder = minari_data_dir(root)
    metadata = json.loads((folder / METADATA).read_text())
    action_space = _space(metadata, "action_space")
    kind = action_space.get("type")
    if kind not in ("Discrete", "Box"):
        raise DatasetError(
            f"{folder / METADATA}: action space {kind!r}; this reader takes Discrete or Box"
        )
    check_output_dir(out, overwrite, inputs=[root])
    discrete = kind == "Discrete"
    start = int(action_space.get("start", 0)) if discrete else 0
    height, width = config.resolution
    with h5py.File(folder / MAIN_FILE, "r") as file:
        names = sorted((k for k in file if k.startswith("episode_")), key=lambda k: int(k[8:]))
        if not names:
            raise DatasetError(f"{folder / MAIN_FILE}: no episode_N groups")
        # Every episode's actions first (small): a box's bounds span the whole dataset.
        actions = [np.asarray(file[name]["actions"][()]) for name in names]
        if discrete:
            actions = [a.reshape(len(a)).astype(np.int64) - start for a in actions]
            space = {"type": "discrete", "n": int(action_space["n"]), "start": start}
        else:
            actions = [a.reshape(len(a), -1).astype(np.float32) for a in actions]
            space = _box_space(action_space, actions, folder / MAIN_FILE)
        source = {"kind": "minari", "root": str(Path(root).resolve()),
                  "dataset_id": metadata.get("dataset_id"), "episodes": len(names),
                  "action": "discrete" if discrete else "continuous",
                  "observation_key": observation_key, "resolution": [height, width],
                  "resize": config.resize}  # fmt: skip
        with DatasetWriter(
            out, frame_shape=(height, width, 3), fields=("actions", "rewards", "dones"),
            source=source, action_space=space, shard_frames=shard_frames, overwrite=overwrite,
        ) as writer:  # fmt: skip
            for name, acts in tqdm(
                zip(names, actions, strict=True), total=len(names), desc="episodes",
                disable=not progress,
            ):  # fmt: skip
                group = file[name]
                where = f"{folder / MAIN_FILE}:{name}"
                obs = _images(group["observations"], observation_key, where)
                steps = len(acts)
                if len(obs) != steps + 1:
                    raise DatasetError(
                        f"{where}: {len(obs)} observations for {steps} actions (expected T + 1)"
                    )
                rewards = np.asarray(group["rewards"][()], np.float32).reshape(steps)
                dones = np.asarray(group["terminations"][()], bool).reshape(steps)
                writer.add_episode(
                    resize_frames(obs, config),
                    actions=_with_final(acts, None),  # (T + 1,) int64 or (T + 1, D) float32
                    rewards=_with_final(rewards, 0.0),
                    dones=_with_final(dones, False),
                )
            return writer.close()
