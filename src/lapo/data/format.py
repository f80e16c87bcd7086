"""The lapo on-disk dataset format (schema version 1).

A dataset is a directory::

    manifest.json            schema version, source, frame shape, action space, counts,
                             episode returns where known, size and sha256 of every file below
    frames/shard-00000.npy   (n, H, W, C) uint8 frames, standard .npy, readable with
    frames/shard-00001.npy   ``np.load(path, mmap_mode="r")``; every shard but the last holds
    ...                      exactly ``shard_frames`` frames, so frame i lives in shard
                             ``i // shard_frames`` at row ``i % shard_frames``
    episodes.npy             (E, 2) int64: start frame and length of each episode, in order,
                             contiguous (episode e+1 starts where e ends)
    actions.npy (optional)   (N,) int64: true action a_t taken at frame t (o_t -> o_{t+1});
                             (N, A) float32 in the environment's units for a continuous
                             action space (manifest ``action_space`` ``{"type": "box",
                             "shape": [A], "low": [...], "high": [...]}``)
    rewards.npy (optional)   (N,) float32: reward received for a_t
    dones.npy   (optional)   (N,) bool: True where a_t ended the episode (terminal, not a cut)

Action-free video has no actions/rewards/dones. An episode's last frame has an action (the one
that ended it, for recordings) but no successor frame, so transitions never cross episodes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lapo.paths import atomic_file

FORMAT_NAME = "lapo-dataset"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
FRAMES_DIR = "frames"
EPISODES = "episodes.npy"
#: Optional per-transition arrays: file name -> numpy dtype.
TRANSITION_ARRAYS: dict[str, str] = {"actions": "int64", "rewards": "float32", "dones": "bool"}


def transition_array_layout(name: str, action_space: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Per-transition shape and dtype of the transition array ``name`` under ``action_space``
    (the manifest's): ``((), int64)`` for discrete actions, ``((A,), float32)`` for a box, and
    ``TRANSITION_ARRAYS``'s scalar dtype for rewards and dones.

    Raises:
        DatasetError: a box action space without a 1-d ``shape``.
    """
    if name == "actions" and isinstance(action_space, dict) and action_space.get("type") == "box":
        shape = action_space.get("shape")
        if not (isinstance(shape, list) and len(shape) == 1 and int(shape[0]) >= 1):
            raise DatasetError(f"a box action space needs shape [A] with A >= 1, got {shape!r}")
        return (int(shape[0]),), np.dtype(np.float32)
    return (), np.dtype(TRANSITION_ARRAYS[name])


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed or inconsistent with its manifest.

    The message names the offending file and says what was expected and what was found.
    """


def shard_name(index: int) -> str:
    """Relative path of frame shard ``index``, e.g. ``frames/shard-00003.npy``."""
    return f"{FRAMES_DIR}/shard-{index:05d}.npy"


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Read a .npy header without loading the data.

    Returns:
        ``(shape, dtype, data_offset)``, where ``data_offset`` is the byte offset of the array.

    Raises:
        DatasetError: the file is not a readable .npy file.
    """
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path}: not a valid .npy file ({exc})") from None
    if fortran:
        raise DatasetError(f"{path}: expected a C-ordered array, found Fortran order")
    return tuple(shape), dtype, offset


class HashingWriter:
    """A write-only file wrapper that sha256-hashes and counts the bytes written through it."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data) -> int:
        """Hash, count and write ``data`` (any buffer, viewed as bytes); returns what the wrapped
        file's ``write`` returns."""
        view = memoryview(data).cast("B")
        self._digest.update(view)
        self.bytes_written += view.nbytes
        return self._fh.write(view)

    def hexdigest(self) -> str:
        """sha256 of all bytes written so far, as 64 hex characters."""
        return self._digest.hexdigest()


def save_npy_hashed(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Save ``array`` as .npy at ``path`` atomically and durably (``lapo.paths.atomic_file``);
    return its file entry.

    Returns:
        ``{"bytes": int, "sha256": str}`` for the manifest.
    """
    with atomic_file(path) as fh:
        writer = HashingWriter(fh)
        np.lib.format.write_array(writer, np.ascontiguousarray(array), allow_pickle=False)
    return {"bytes": writer.bytes_written, "sha256": writer.hexdigest()}


def box_action_space(
    data_min: np.ndarray,
    data_max: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """The manifest's box action space for float actions observed in ``[data_min, data_max]``.

    Args:
        data_min, data_max: ``(A,)`` per-dimension minimum and maximum of the (float32) actions
            over the whole dataset.
        low, high: ``(A,)`` declared bounds (e.g. a Box space's), or None. A dimension takes them
            where both are finite and ``high - low`` is finite in float32; otherwise (and with
            None) it takes the observed minimum and maximum. Callers check that the actions lie
            within declared bounds.
        names: the A action names, kept as the space's ``"names"``; None: no names.

    Returns:
        ``{"type": "box", "shape": [A], "low": [...], "high": [...]}`` (and ``"names"``), the
        bounds float32 values with ``high > low`` in every dimension.

    Raises:
        ValueError: shapes that differ or are not ``(A,)`` with A >= 1; observed bounds that are
            not finite or whose range is not finite in float32.
    """
    data_min = np.asarray(data_min, np.float32)
    data_max = np.asarray(data_max, np.float32)
    if data_min.ndim != 1 or len(data_min) < 1 or data_max.shape != data_min.shape:
        raise ValueError(f"bounds must be (A,) with A >= 1, got {data_min.shape}, {data_max.shape}")
    out_low, out_high = data_min.copy(), data_max.copy()
    if low is not None and high is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            low = np.asarray(low, np.float64).astype(np.float32).reshape(data_min.shape)
            high = np.asarray(high, np.float64).astype(np.float32).reshape(data_min.shape)
            usable = np.isfinite(low) & np.isfinite(high) & np.isfinite(high - low)
        out_low[usable], out_high[usable] = low[usable], high[usable]
    with np.errstate(over="ignore", invalid="ignore"):
        span = out_high - out_low
    if not (np.isfinite(span).all() and (span >= 0).all()):
        raise ValueError(
            f"action bounds [{out_low.tolist()}, {out_high.tolist()}] are not finite, ordered "
            "float32 ranges"
        )
    # A constant dimension (low == high) would make the decoder's scaling 2 (a - low) / (high -
    # low) - 1 divide by zero: widen it symmetrically by 1 (0.5 on each side; relatively more
    # where float32 cannot resolve 0.5 at that magnitude), so the constant maps to 0.
    flat = out_high <= out_low
    pad = np.maximum(np.float32(0.5), np.abs(out_low) * np.float32(1e-3))
    out_low[flat], out_high[flat] = out_low[flat] - pad[flat], out_high[flat] + pad[flat]
    space: dict[str, Any] = {"type": "box", "shape": [len(out_low)], "low": out_low.tolist(),
                             "high": out_high.tolist()}  # fmt: skip
    if names is not None:
        space["names"] = [str(n) for n in names]
    return space
