"""Import numpy arrays (.npy / .npz) as lapo datasets.

Every input file is checked (array names, shapes, dtypes, small index arrays) before anything is
written, so most mistakes fail fast with a message naming the file. Frames are then written one
episode at a time: ``.npy`` files are memory-mapped, ``.npz`` members are loaded one file at a
time (numpy cannot memory-map a zip member).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lapo.config import VideoImportConfig
from lapo.data.array_files import (
    PathArg,
    array_headers,
    check_frame_array,
    check_vector,
    expand_paths,
    given_paths,
    load_array,
)
from lapo.data.format import DatasetError, box_action_space
from lapo.data.writer import DEFAULT_SHARD_FRAMES, DatasetWriter, check_output_dir

#: Arrays ``import_arrays`` accepts in a .npz file (``frames`` is required).
ARRAY_KEYS = (
    "frames", "actions", "episode_starts", "rewards", "dones", "action_low", "action_high"
)  # fmt: skip
_STORED = ("actions", "rewards", "dones")
_BOUNDS = ("action_low", "action_high")


def _episode_starts(path: Path, starts: np.ndarray, n: int) -> np.ndarray:
    """Start frames ``(E,) int64`` from a ``(n,)`` bool mask or a sorted 1-D index array.

    Frame 0 always starts an episode (episodes never cross files), whether or not it is listed.
    """
    if starts.ndim != 1:
        raise DatasetError(f"{path}: episode_starts must be 1-D, got shape {starts.shape}")
    if starts.dtype == np.bool_:
        if len(starts) != n:
            raise DatasetError(
                f"{path}: episode_starts as a bool mask must have length {n}, got {len(starts)}"
            )
        starts = np.flatnonzero(starts)
    elif starts.dtype.kind not in "iu":
        raise DatasetError(
            f"{path}: episode_starts must be a bool mask or int indices, got {starts.dtype}"
        )
    starts = starts.astype(np.int64)
    if len(starts) and (starts.min() < 0 or starts.max() >= n):
        raise DatasetError(
            f"{path}: episode_starts must lie in [0, {n}), got range [{starts.min()}, "
            f"{starts.max()}]"
        )
    if (np.diff(starts) <= 0).any():
        raise DatasetError(
            f"{path}: episode_starts indices must be strictly increasing (sorted, no repeats); "
            "if this is a 0/1 mask, pass it as bool (x.astype(bool))"
        )
    return starts if len(starts) and starts[0] == 0 else np.r_[0, starts]


def _check_dones(path: Path, dones: np.ndarray, starts: np.ndarray) -> None:
    """Dones must be 0/1 and True only at an episode's last frame."""
    if dones.dtype != np.bool_ and not np.isin(dones, (0, 1)).all():
        raise DatasetError(f"{path}: dones must be bool or 0/1, got other values")
    last = np.zeros(len(dones), dtype=bool)
    last[starts[1:] - 1] = last[-1] = True
    inner = np.flatnonzero(dones.astype(bool) & ~last)
    if len(inner):
        raise DatasetError(
            f"{path}: dones[{inner[0]}] is True but frame {inner[0]} is not the last of its "
            "episode; give episode_starts that start an episode after every done, e.g. "
            "np.r_[0, np.flatnonzero(dones[:-1]) + 1]"
        )


def _box_bounds(path: Path, headers: dict, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(A,)`` float64 ``action_low`` / ``action_high`` of a file, checked; None if absent.

    Infinite entries leave that dimension's bound to the observed actions."""
    given = [key for key in _BOUNDS if key in headers]
    if not given:
        return None
    if len(given) == 1:
        raise DatasetError(f"{path}: {given[0]} needs its partner; give both action_low and "
                           "action_high, or neither")  # fmt: skip
    bounds = []
    for key in _BOUNDS:
        shape, dtype = headers[key]
        if shape != (dim,) or dtype.kind not in "iuf":
            raise DatasetError(
                f"{path}: {key} must be ({dim},) numbers like the actions' last axis, got "
                f"{dtype} {shape}"
            )
        bounds.append(np.asarray(load_array(path, key), np.float64))
    low, high = bounds
    if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
        raise DatasetError(
            f"{path}: action_low {low.tolist()} and action_high {high.tolist()} must be "
            "numbers with action_low <= action_high"
        )
    return low, high


def _inspect_box_actions(path: Path, headers: dict, n: int) -> dict[str, Any]:
    """Check ``(n, A)`` float actions and their optional bounds; return ``{"dim", "min", "max",
    "bounds"}`` (``(A,)`` per-dimension minimum and maximum, declared bounds or None)."""
    shape, dtype = headers["actions"]
    if len(shape) != 2 or shape[0] != n or shape[1] < 1:
        raise DatasetError(
            f"{path}: float actions must have shape ({n}, A) like the frames (continuous, A >= 1; "
            f"one dimension: x[:, None]; discrete actions are ints: x.astype(int)), got {shape}"
        )
    actions = np.asarray(load_array(path, "actions"), np.float32)  # stored as float32
    bad = np.flatnonzero(~np.isfinite(actions).all(axis=1))
    if len(bad):
        raise DatasetError(
            f"{path}: actions[{bad[0]}] = {actions[bad[0]].tolist()} is not finite ({len(bad)} "
            "such frame(s)); float actions must be finite numbers"
        )
    low_high = _box_bounds(path, headers, shape[1])
    data_min, data_max = actions.min(axis=0), actions.max(axis=0)
    if low_high is not None:
        low, high = (np.asarray(b, np.float32) for b in low_high)  # compared as stored
        outside = np.flatnonzero((data_min < low) | (data_max > high))
        if len(outside):
            d = outside[0]
            raise DatasetError(
                f"{path}: actions[:, {d}] range [{data_min[d]}, {data_max[d]}] lies outside "
                f"action_low/action_high [{low[d]}, {high[d]}]"
            )
    return {"dim": shape[1], "min": data_min, "max": data_max, "bounds": low_high}


def _inspect_array_file(path: Path, num_actions: int | None) -> tuple[dict, np.ndarray, Any]:
    """Check one import_arrays input; return its headers, episode starts and actions summary:
    the max action (ints; -1 without actions) or ``_inspect_box_actions``'s dict (floats)."""
    headers = array_headers(path)
    if "frames" not in headers:
        hint = (
            " (an original LAPO release chunk? use import_lapo_release)" if "obs" in headers else ""
        )
        raise DatasetError(f"{path}: no 'frames' array, found {sorted(headers)}{hint}")
    unknown = sorted(set(headers) - set(ARRAY_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unexpected arrays {unknown}; accepted: {list(ARRAY_KEYS)}")
    shape, dtype = headers["frames"]
    check_frame_array(path, "frames", shape, dtype)
    n = shape[0]
    box = "actions" in headers and headers["actions"][1].kind == "f"
    if "actions" in headers and not box and len(headers["actions"][0]) == 2:
        if headers["actions"][0][1] != 1:  # (N, A) ints: neither discrete nor continuous
            raise DatasetError(
                f"{path}: actions of shape {headers['actions'][0]} {headers['actions'][1]}: "
                "discrete actions are (N,) ints, continuous ones (N, A) floats "
                "(x.astype(np.float32))"
            )
    for key, kinds in (("actions", "iu"), ("rewards", "iuf"), ("dones", "biu")):
        if key in headers and not (key == "actions" and box):
            check_vector(path, key, *headers[key], n, kinds)
    if not box and any(key in headers for key in _BOUNDS):
        raise DatasetError(f"{path}: action_low / action_high are only for float (N, A) actions")
    starts = np.zeros(1, dtype=np.int64)
    if "episode_starts" in headers:
        starts = _episode_starts(path, load_array(path, "episode_starts"), n)
    if "dones" in headers:
        dones = load_array(path, "dones").reshape(-1)
        if "episode_starts" not in headers and np.isin(dones, (0, 1)).all():
            starts = np.r_[0, np.flatnonzero(dones[:-1]) + 1]  # an episode ends at each done
        _check_dones(path, dones, starts)
    if box:
        return headers, starts, _inspect_box_actions(path, headers, n)
    max_action = -1
    if "actions" in headers:
        actions = load_array(path, "actions").reshape(-1)
        if actions.min() < 0 or (num_actions is not None and actions.max() >= num_actions):
            wanted = "be >= 0" if num_actions is None else f"lie in [0, {num_actions})"
            raise DatasetError(
                f"{path}: discrete actions must {wanted}, got range "
                f"[{actions.min()}, {actions.max()}]"
            )
        max_action = int(actions.max())
    return headers, starts, max_action


def _action_kind(summary: Any) -> tuple:
    """What must agree between files: discrete, or the box's A and declared bounds."""
    if not isinstance(summary, dict):
        return ("discrete",)
    bounds = summary["bounds"]
    return ("box", summary["dim"], None if bounds is None else [b.tolist() for b in bounds])


def _action_space(summaries: list, num_actions: int | None) -> dict[str, Any]:
    """The dataset's action space from the files' action summaries (all of one kind)."""
    if not isinstance(summaries[0], dict):
        return {"type": "discrete", "n": num_actions or max(summaries) + 1}
    if num_actions is not None:
        raise ValueError("num_actions is for integer actions; the files have float actions")
    bounds = summaries[0]["bounds"] or (None, None)
    data_min = np.min([s["min"] for s in summaries], axis=0)
    data_max = np.max([s["max"] for s in summaries], axis=0)
    return box_action_space(data_min, data_max, *bounds)


def _episode_kwargs(arrays: dict[str, np.ndarray], start: int, stop: int) -> dict[str, Any]:
    """``add_episode`` keyword arguments for frames ``[start, stop)``; return only if complete."""
    kwargs = {}
    for key, values in arrays.items():
        part = np.asarray(values[start:stop])
        if key == "actions" and part.dtype.kind == "f":  # (T, A): as checked, in float32
            kwargs[key] = part.astype(np.float32)
        else:
            kwargs[key] = part.reshape(-1)
    if "dones" in kwargs:
        kwargs["dones"] = kwargs["dones"].astype(bool)
    if "rewards" in kwargs and "dones" in kwargs and kwargs["dones"][-1]:
        kwargs["episode_return"] = float(kwargs["rewards"].sum(dtype=np.float64))
    return kwargs


def import_arrays(
    paths: PathArg | Mapping[str, np.ndarray],
    out: str | os.PathLike,
    *,
    num_actions: int | None = None,
    resize: VideoImportConfig | None = None,
    overwrite: bool = False,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    progress: bool = True,
    _in_memory: bool = False,
) -> dict[str, Any]:
    """Import frames (and optionally actions, rewards, dones) from numpy files or arrays.

    Each path is a ``.npy`` file, a ``.npz`` file, or a folder whose ``.npy``/``.npz`` files are
    taken sorted by name. A ``.npy`` holds frames only. A ``.npz`` holds:

    - ``frames``: ``(N, H, W, C) uint8``, channels last (required);
    - ``actions``: a_t taken at frame t (optional): ``(N,)`` non-negative ints (discrete), or
      ``(N, A)`` finite floats, A >= 1 (continuous, stored as float32 with a box action space);
    - ``action_low``, ``action_high``: ``(A,)`` bounds of float actions (optional, both or
      neither; actions outside them are refused). Without them, or where an entry is
      infinite, a dimension's bounds are the observed minimum and maximum over all files; a
      constant dimension is widened to ``[c - 0.5, c + 0.5]``;
    - ``rewards``: ``(N,)`` numbers, the reward for a_t (optional, stored as float32);
    - ``dones``: ``(N,)`` bool or 0/1, True where a_t ended the episode (optional; only allowed
      at an episode's last frame);
    - ``episode_starts``: ``(N,)`` bool, True at each episode's first frame, or 1-D strictly
      increasing int indices of those frames (optional; without it an episode ends at each
      done, as in D4RL-style files, and without dones the file is one episode).
      Frame 0 of a file always starts an episode: episodes never cross files.

    All files must have the same frame shape and the same optional arrays (float actions: the
    same A and the same bounds). An episode's return is the sum of its rewards when it ends with
    a done, else unknown (None).

    Args:
        paths: a path or a list of paths (files or folders), or the arrays themselves in
            memory: a dict with the keys of one ``.npz`` (``{"frames": frames, "actions":
            actions}``; written to a temporary ``.npz`` first, which is then removed).
        out: dataset directory to create.
        num_actions: size of the discrete action space; default ``max(actions) + 1``.
        resize: RGB frames are resized to ``resize.resolution`` by ``resize.resize`` (crop, pad
            or stretch) with the video importer's scaler, e.g. 84x84 Atari frames to 64x64
            (``fps``, ``frame_stride``, ``clip_frames`` must stay unset); files may then differ
            in frame size. None: frames are stored as they come.
        overwrite: replace an existing dataset at ``out`` (only once the import has succeeded).
        shard_frames: frames per shard file.
        progress: show a tqdm bar of frames written.

    Returns:
        The manifest; its source is ``{"kind": "arrays", "files": [absolute paths]}``
        (``["(in memory)"]`` for arrays given in memory).

    Raises:
        DatasetError: a missing or unreadable file, a wrong dtype, shape or layout (e.g.
            channel-first frames, ``(N,)`` float actions), inconsistent files, out-of-range
            actions or episode starts, non-finite float actions or float actions outside the
            given ``action_low`` / ``action_high``; the message names the file. Raised before
            anything is written.
        ValueError: ``num_actions`` given but not positive, or given for files without integer
            actions; ``resize`` with frame sampling set, or for frames that are not RGB.
        FileExistsError: ``out`` exists and ``overwrite`` is False, or ``overwrite`` is True but
            ``out`` is not a lapo dataset or run directory (raised before any work).
        ValueError: ``out`` is, contains or lies inside a source (raised before any work).
        lapo.safety.InUseError: another lapo process is writing ``out``.
    """
    if num_actions is not None and num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    if resize is not None and (resize.fps, resize.frame_stride, resize.clip_frames) != (
        None,
        1,
        None,
    ):
        raise ValueError("arrays keep every frame: fps, frame_stride and clip_frames stay unset")
    if isinstance(paths, Mapping):  # the same checks as a file's, on a temporary .npz
        unknown = sorted(set(paths) - set(ARRAY_KEYS))
        if unknown or "frames" not in paths:
            raise DatasetError(
                f"arrays given in memory: expected the keys {', '.join(ARRAY_KEYS)} (frames "
                f"required), got {', '.join(map(str, paths))}"
            )
        check_output_dir(out, overwrite)  # before writing the arrays anywhere
        parent = Path(out).resolve().parent  # the disk the dataset goes to, not a small /tmp
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".lapo-arrays-", dir=parent) as tmp:
            file = Path(tmp) / "arrays.npz"
            np.savez(file, **{k: np.asarray(v) for k, v in paths.items()})
            try:
                return import_arrays(file, out, num_actions=num_actions, resize=resize,
                                     overwrite=overwrite, shard_frames=shard_frames,
                                     progress=progress, _in_memory=True)  # fmt: skip
            except DatasetError as error:  # name what the user gave, not the temporary file
                raise DatasetError(
                    str(error).replace(str(file), "arrays given in memory")
                ) from None
    files = expand_paths(paths, (".npy", ".npz"))
    check_output_dir(out, overwrite, inputs=[*given_paths(paths), *files])
    plans, summaries = [], []
    for path in files:
        headers, starts, summary = _inspect_array_file(path, num_actions)
        fields = tuple(k for k in _STORED if k in headers)
        shape = headers["frames"][0]
        if resize is not None and shape[3] != 3:
            raise ValueError(
                f"{path}: frames of {shape[3]} channels; resizing (--resolution) takes RGB "
                "frames (3 channels): store them as they come, without --resolution"
            )
        compared = shape[1:] if resize is None else shape[3:]  # resized: sizes may differ
        if plans and (compared, fields) != (plans[0][1][len(shape) - len(compared) :], plans[0][2]):
            first = plans[0]
            raise DatasetError(
                f"{path}: frames {shape[1:]} with arrays {list(fields)} differ from the first "
                f"file {first[0]}: frames {first[1][1:]} with arrays {list(first[2])}; all files "
                "must have the same frame shape and the same optional arrays"
            )
        if (
            "actions" in fields
            and summaries
            and _action_kind(summary) != _action_kind(summaries[0])
        ):
            raise DatasetError(
                f"{path}: actions {_action_kind(summary)} differ from the first file "
                f"{plans[0][0]}: {_action_kind(summaries[0])} (kind, A, bounds); all files must "
                "agree"
            )
        plans.append((path, shape, fields, starts))
        summaries.append(summary)
    fields = plans[0][2]
    if num_actions is not None and "actions" not in fields:
        raise ValueError("num_actions was given but the files have no actions")
    space = _action_space(summaries, num_actions) if "actions" in fields else None
    given = ["(in memory)"] if _in_memory else [str(p.resolve()) for p in files]
    source: dict[str, Any] = {"kind": "arrays", "files": given}
    frame_shape = plans[0][1][1:]
    if resize is not None:
        source.update(resolution=list(resize.resolution), resize=resize.resize)
        frame_shape = (*resize.resolution, 3)
    total = sum(shape[0] for _, shape, _, _ in plans)
    with (
        DatasetWriter(
            out,
            frame_shape=frame_shape,
            fields=fields,
            source=source,
            action_space=space,
            shard_frames=shard_frames,
            overwrite=overwrite,
        ) as writer,
        tqdm(total=total, unit="frame", desc="import", disable=not progress) as bar,
    ):
        for path, shape, _, starts in plans:
            frames = load_array(path, "frames")
            if resize is not None:
                from lapo.data.import_video import resize_frames  # PyAV only when resizing

                frames = resize_frames(frames, resize)
            arrays = {key: load_array(path, key) for key in fields}
            bounds = np.r_[starts, shape[0]]
            for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                writer.add_episode(frames[start:stop], **_episode_kwargs(arrays, start, stop))
                bar.update(stop - start)
        return writer.close()
