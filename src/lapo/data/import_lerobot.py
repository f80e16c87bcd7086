"""Import a LeRobotDataset directory (codebase v2.0, v2.1 and v3.0 layouts) as a lapo dataset.

The reader follows the on-disk layout, not the ``lerobot`` package (which is not needed)::

    meta/info.json          codebase_version, fps, chunks_size, data_path / video_path
                            templates, features {name: {dtype, shape, names}}
    meta/episodes.jsonl     {"episode_index", "length", ...} per line (optional here)
    data/chunk-000/episode_000000.parquet     one row per frame: frame_index, timestamp,
                            action, next.reward, next.done, ... (image features: PNG bytes)
    videos/chunk-000/<camera_key>/episode_000000.mp4           one video per camera key

One lapo episode per LeRobot episode; the frames of the chosen camera (``camera``, a feature of
dtype ``video`` or ``image``) are resized like video (``VideoImportConfig``; every frame, no
fps resampling). Actions are kept as the lapo ``actions`` field: an integer ``action`` (shape
``[]`` or ``[1]``) with a discrete action space, any other (a float vector of D values) as
``(N, D) float32`` with a box action space whose bounds are the observed per-dimension minimum
and maximum over the whole dataset (``lapo.data.format.box_action_space``; the feature's ``names``
become the space's ``names``). ``next.reward`` / ``next.done`` become ``rewards`` / ``dones``.
Datasets imported before this kept float vectors in a side file ``continuous_actions.npy``
(``CONTINUOUS_ACTIONS``) without ``actions``; they still read as they did.

Codebase v3.0 keeps several episodes per file: ``meta/episodes/chunk-*/file-*.parquet`` gives each
episode's ``data/chunk_index``, ``data/file_index`` and, per camera, ``videos/<key>/chunk_index``,
``file_index`` and ``from_timestamp``; the templates are ``data/chunk-{chunk_index:03d}/
file-{file_index:03d}.parquet`` and ``videos/{video_key}/chunk-{chunk_index:03d}/
file-{file_index:03d}.mp4``. An episode's rows are those of its ``episode_index``; its frame for
a row is the video frame nearest ``from_timestamp + timestamp`` (within half a frame period).
Checked against the layouts LeRobot wrote in 2025 (v2.1, and v3.0 from its 0.4 release).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm.auto import tqdm

from lapo.config import VideoImportConfig
from lapo.data.format import DatasetError, box_action_space
from lapo.data.import_video import _resized, decode_video, decode_video_times
from lapo.data.optional import require
from lapo.data.writer import DEFAULT_SHARD_FRAMES, DatasetWriter, check_output_dir

#: The LeRobot codebase versions whose layout this reader knows.
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
#: The side file of float action vectors of datasets imported before they became ``actions``
#: (``(N, D) float32``, listed in the manifest's ``files``); no longer written.
CONTINUOUS_ACTIONS = "continuous_actions.npy"


def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json`` of a LeRobot dataset, checked for the supported layout.

    Raises:
        DatasetError: no ``meta/info.json``, or a codebase version other than v2.0, v2.1, v3.0.
    """
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise DatasetError(f"{root}: no meta/info.json (expected a LeRobotDataset directory)")
    info = json.loads(path.read_text())
    version = str(info.get("codebase_version"))
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{path}: LeRobot codebase_version {version}; this reader knows "
            f"{', '.join(SUPPORTED_VERSIONS)}"
        )
    for key in ("data_path", "features", "chunks_size"):
        if key not in info:
            raise DatasetError(f"{path}: no {key!r} (a LeRobot info.json has it)")
    return info


def camera_keys(info: dict[str, Any]) -> list[str]:
    """Features holding images (dtype ``video`` or ``image``), in the file's order."""
    return [k for k, f in info["features"].items() if f.get("dtype") in ("video", "image")]


def _camera(info: dict[str, Any], camera: str | None, root: Path) -> str:
    keys = camera_keys(info)
    if camera is None:
        if len(keys) != 1:
            raise DatasetError(
                f"{root}: {len(keys)} camera features ({', '.join(keys) or 'none'}); choose one "
                "with --camera KEY"
            )
        return keys[0]
    if camera not in keys:
        raise DatasetError(
            f"{root}: no camera feature {camera!r}; it has {', '.join(keys) or 'none'}"
        )
    return camera


def _episode_indices(root: Path, info: dict[str, Any]) -> list[int]:
    listing = root / "meta" / "episodes.jsonl"
    if listing.is_file():
        lines = [ln for ln in listing.read_text().splitlines() if ln.strip()]
        return sorted(int(json.loads(ln)["episode_index"]) for ln in lines)
    return list(range(int(info.get("total_episodes", 0))))


def _image_frames(column: list, config: VideoImportConfig) -> np.ndarray:
    """PNG/JPEG bytes (``{"bytes": ..., "path": ...}`` cells) decoded with PyAV and resized."""
    frames = []
    for cell in column:
        data = cell["bytes"] if isinstance(cell, dict) else cell
        with av.open(io.BytesIO(data)) as container:
            frame = next(container.decode(video=0))
        frames.append(_resized(frame, config))
    return np.stack(frames)


def _column(table, name: str) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    values = table.column(name).to_pylist()
    return np.asarray(values)


def _v2_episodes(root, info, key, features, parquet, config, episodes) -> list:
    """``[(episode_index, table sorted by frame_index, read_frames)]`` of the v2 layout."""
    if not episodes:
        raise DatasetError(f"{root}: no episodes listed")
    out = []
    for ep in episodes:
        chunk = ep // int(info["chunks_size"])
        path = root / info["data_path"].format(episode_chunk=chunk, episode_index=ep)
        if not path.is_file():
            raise DatasetError(f"{path}: missing (episode {ep} of {root})")
        table = parquet.read_table(path)
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        if features[key]["dtype"] == "video":
            video = root / info["video_path"].format(
                episode_chunk=chunk, video_key=key, episode_index=ep
            )
            read = _video_rows(video, path, table.num_rows, config)
        else:
            read = _image_rows(table, key, config)
        out.append((ep, table, read))
    return out


def _video_rows(video: Path, data: Path, rows: int, config: VideoImportConfig):
    def read() -> np.ndarray:
        frames = decode_video(video, config)
        if len(frames) < rows:
            raise DatasetError(f"{video}: {len(frames)} frames for the {rows} rows of {data.name}")
        return frames[:rows]  # a video may carry one extra frame at its end

    return read


def _image_rows(table, key: str, config: VideoImportConfig):
    return lambda: _image_frames(table.column(key).to_pylist(), config)


def _v3_episodes(root, info, key, features, parquet, config) -> list:
    """``[(episode_index, table sorted by frame_index, read_frames)]`` of the v3.0 layout."""
    import pyarrow.compute as pc

    listing = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not listing:
        raise DatasetError(f"{root}: no meta/episodes/chunk-*/file-*.parquet (LeRobot v3.0)")
    rows = [r for f in listing for r in parquet.read_table(f).to_pylist()]
    fps = float(info.get("fps") or 30)
    tables: dict[Path, Any] = {}
    decoded: dict[Path, tuple[np.ndarray, np.ndarray]] = {}  # the last video file decoded
    out = []
    for row in sorted(rows, key=lambda r: int(r["episode_index"])):
        ep = int(row["episode_index"])
        path = root / info["data_path"].format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
        )
        if path not in tables:
            if not path.is_file():
                raise DatasetError(f"{path}: missing (episode {ep} of {root})")
            tables[path] = parquet.read_table(path)
        table = tables[path].filter(pc.equal(tables[path].column("episode_index"), ep))
        table = table.sort_by("frame_index")
        if table.num_rows == 0:
            raise DatasetError(f"{path}: no rows of episode {ep}")
        if features[key]["dtype"] != "video":
            out.append((ep, table, _image_rows(table, key, config)))
            continue
        video = root / info["video_path"].format(
            video_key=key,
            chunk_index=int(row[f"videos/{key}/chunk_index"]),
            file_index=int(row[f"videos/{key}/file_index"]),
        )
        start = float(row[f"videos/{key}/from_timestamp"])
        wanted = start + np.asarray(table.column("timestamp").to_pylist(), np.float64)

        def read(video=video, wanted=wanted, ep=ep) -> np.ndarray:
            if video not in decoded:
                decoded.clear()  # one video file in memory at a time
                decoded[video] = decode_video_times(video, config)
            frames, times = decoded[video]
            nearest = np.clip(np.searchsorted(times, wanted), 1, len(times) - 1)
            nearest -= (wanted - times[nearest - 1]) < (times[nearest] - wanted)
            off = np.abs(times[nearest] - wanted).max() if len(times) > 1 else 0.0
            if off > 0.5 / fps + 1e-3:
                raise DatasetError(
                    f"{video}: no frame within half a frame of {off:.3f} s for episode {ep}"
                )
            return frames[nearest]

        out.append((ep, table, read))
    return out


def import_lerobot(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    camera: str | None = None,
    config: VideoImportConfig | None = None,
    overwrite: bool = False,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Import the LeRobotDataset at ``root`` (v2.0, v2.1 or v3.0 layout) into a new lapo dataset.

    Args:
        root: the dataset directory (holding ``meta/info.json``).
        out: dataset directory to create.
        camera: image feature to import (e.g. ``observation.images.top``); None: the only one.
        config: resolution and resize mode of the frames (``fps``, ``frame_stride`` and
            ``clip_frames`` must be left at their defaults: rows and frames stay aligned).
        overwrite, shard_frames, progress: as ``lapo.data.import_video.import_videos``.

    Returns:
        The manifest; its source is ``{"kind": "lerobot", "root", "codebase_version", "camera",
        "fps", "episodes", "action": "discrete" | "continuous" | None, ...}``; with a float
        ``action`` its action space is ``{"type": "box", "shape": [D], "low", "high"(,
        "names")}`` and ``actions`` are ``(N, D) float32``.

    Raises:
        ImportError: pyarrow is not installed (``pip install 'lapo[formats]'``).
        DatasetError: not a LeRobot dataset of a known version; no or an unknown camera; an
            episode's video has too few frames for its rows, or (v3.0) none near a row's time
            (the message names the file); an episode without its ``action`` column, or with a
            NaN or infinite float action.
        ValueError: sampling options in ``config``; ``out`` inside ``root``.
        FileExistsError: ``out`` exists and not ``overwrite``.
    """
    parquet = require("pyarrow.parquet", "reading a LeRobotDataset")
    config = config or VideoImportConfig()
    if config.fps is not None or config.frame_stride != 1 or config.clip_frames is not None:
        raise ValueError("LeRobot import keeps every frame: fps, frame_stride, clip_frames unset")
    root = Path(root)
    info = read_info(root)
    key = _camera(info, camera, root)
    check_output_dir(out, overwrite, inputs=[root])
    features = info["features"]
    action = features.get("action", {})
    discrete = action.get("dtype", "").startswith(("int", "uint")) and list(
        action.get("shape", [1])
    ) in ([], [1])
    fields = [f for f, c in (("actions", bool(action)), ("rewards", "next.reward" in features),
                             ("dones", "next.done" in features)) if c]  # fmt: skip
    if info["codebase_version"] == "v3.0":
        tables = _v3_episodes(root, info, key, features, parquet, config)
    else:
        episodes = _episode_indices(root, info)
        tables = _v2_episodes(root, info, key, features, parquet, config, episodes)
    actions = [_episode_actions(root, ep, t, discrete) for ep, t, _ in tables] if action else []
    names = action.get("names")
    space = _action_space(actions, discrete, names) if action else None
    source = {"kind": "lerobot", "root": str(root.resolve()),
              "codebase_version": info["codebase_version"], "camera": key,
              "fps": info.get("fps"), "episodes": [ep for ep, _, _ in tables],
              "action": "discrete" if discrete else ("continuous" if action else None),
              "resolution": list(config.resolution), "resize": config.resize}  # fmt: skip
    if names is not None and space is not None and space["type"] == "box" and "names" not in space:
        source["action_names"] = names  # kept as given where they do not name each dimension
    height, width = config.resolution
    with DatasetWriter(
        out, frame_shape=(height, width, 3), fields=fields, source=source, action_space=space,
        shard_frames=shard_frames, overwrite=overwrite,
    ) as writer:  # fmt: skip
        for e, (_, table, read_frames) in enumerate(
            tqdm(tables, desc="episodes", disable=not progress)
        ):
            rows = table.num_rows
            frames = read_frames()
            kwargs: dict[str, Any] = {}
            if action:
                kwargs["actions"] = actions[e]
            if "rewards" in fields:
                kwargs["rewards"] = _column(table, "next.reward").reshape(rows).astype(np.float32)
            if "dones" in fields:
                kwargs["dones"] = _column(table, "next.done").reshape(rows).astype(bool)
            writer.add_episode(frames, **kwargs)
        return writer.close()


def _episode_actions(root: Path, ep: int, table, discrete: bool) -> np.ndarray:
    """One episode's ``action`` column: ``(T,) int64`` (discrete) or ``(T, D) float32``.

    Raises:
        DatasetError: the column is missing, or a float action is NaN or infinite.
    """
    values = _column(table, "action")
    if values is None:
        raise DatasetError(
            f"{root}: episode {ep} has no 'action' column, though meta/info.json lists the feature"
        )
    rows = table.num_rows
    if discrete:
        return values.reshape(rows).astype(np.int64)
    values = values.reshape(rows, -1).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise DatasetError(
            f"{root}: episode {ep} frame {bad[0]}: action {values[bad[0]].tolist()} is not finite"
        )
    return values


def _action_space(actions: list[np.ndarray], discrete: bool, names: Any) -> dict[str, Any]:
    """The action space of the episodes' ``actions``: discrete with ``n`` = max + 1 (or the
    number of ``names`` when more), else a box over the observed range (constant dimensions
    widened, see ``box_action_space``) with ``names`` where they name each dimension."""
    if discrete:
        top = max(int(a.max()) for a in actions)
        n = len(names) if isinstance(names, list) and len(names) > top else top + 1
        return {"type": "discrete", "n": n}
    dim = actions[0].shape[1]
    if any(a.shape[1] != dim for a in actions):
        raise DatasetError(
            f"action vectors of different sizes: {sorted({a.shape[1] for a in actions})}"
        )
    if isinstance(names, dict) and len(names) == 1:  # e.g. {"motors": [...]}
        names = next(iter(names.values()))
    fits = isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names)
    stacked = np.concatenate(actions)  # (N, D) float32
    return box_action_space(stacked.min(0), stacked.max(0), names=names if fits else None)
