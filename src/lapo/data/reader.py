"""Open, check and read lapo datasets (format in ``lapo.data.format``).

Frames are read with ``os.preadv`` straight into the output array rather than through a memory
map: page-cache pages then never count toward the process's resident memory, so RSS stays flat
however many frames are on disk and however long sampling runs. (Shards remain plain .npy files
that ``np.load(..., mmap_mode="r")`` or ``LapoDataset.shard_memmap`` can map for bulk reads.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from lapo.data.format import (
    EPISODES,
    MANIFEST,
    TRANSITION_ARRAYS,
    DatasetError,
    shard_name,
    transition_array_layout,
)
from lapo.data.manifest import check_array_file, load_manifest
from lapo.paths import confined_file, sha256_file


class LapoDataset:
    """A lapo dataset opened for reading; checks the manifest against the files on open.

    Opening costs O(shards + episodes): it reads headers and the episode index, never frames.
    Hash checks are in ``verify()`` (``lapo data verify``).

    Attributes:
        path: dataset directory.
        manifest: the parsed manifest.json.
        frame_shape: ``(H, W, C)``.
        episodes: ``(E, 2) int64``, start frame and length per episode.
        num_frames, num_episodes: counts.

    Raises:
        DatasetError: missing/invalid manifest, a missing, truncated or wrong-shaped file, a
            file listed in the manifest outside the dataset directory or not a regular file, an
            inconsistent episode index, or an empty dataset; the message names the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.manifest = m = load_manifest(self.path)  # every value's JSON type is checked
        self.frame_shape = tuple(int(s) for s in m["frame_shape"])
        self.num_frames = int(m["num_frames"])
        self.num_episodes = int(m["num_episodes"])
        self.shard_frames = int(m["shard_frames"])
        if self.num_frames < 1 or self.num_episodes < 1:
            raise DatasetError(f"{self.path / MANIFEST}: the dataset is empty (no frames)")
        self._frame_bytes = int(np.prod(self.frame_shape))
        self._check_shards()
        if not isinstance(m["files"], dict):
            raise DatasetError(f"{self.path / MANIFEST}: 'files' must be an object")
        for name in m["files"]:  # every listed file lies in the dataset and is a regular file
            self._listed_file(name)
        self.episodes = self._load_episodes()
        self._fields = {}
        for name in m["fields"]:
            file = f"{name}.npy"
            entry = m["files"].get(file)
            if name not in TRANSITION_ARRAYS or entry is None:
                raise DatasetError(f"{self.path / MANIFEST}: field {name!r} has no file entry")
            tail, dtype = transition_array_layout(name, m.get("action_space"))
            check_array_file(self.path / file, entry, (self.num_frames, *tail), dtype)
            self._fields[name] = None  # loaded lazily (memory-mapped) by _field()
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def _listed_file(self, name: Any) -> Path:
        """The file ``name`` of the manifest's ``files``, confined to the dataset directory.

        Raises:
            DatasetError: it resolves outside the dataset, is not a regular file, or is missing.
        """
        where = str(self.path / MANIFEST)
        try:
            return confined_file(self.path, name, where, DatasetError)
        except FileNotFoundError:
            missing = self.path / name
            raise DatasetError(f"{missing}: file is missing (listed in the manifest)") from None

    def _check_shards(self) -> None:
        shards = self.manifest["shards"]
        expected = -(-self.num_frames // self.shard_frames)
        if len(shards) != expected:
            raise DatasetError(
                f"{self.path / MANIFEST}: {self.num_frames} frames in shards of "
                f"{self.shard_frames} need {expected} shards, manifest lists {len(shards)}"
            )
        self._offsets = []
        for i, shard in enumerate(shards):
            if shard.get("file") != shard_name(i):  # never follow a path out of the dataset
                raise DatasetError(
                    f"{self.path / MANIFEST}: shard {i} must be {shard_name(i)!r}, "
                    f"manifest says {shard.get('file')!r}"
                )
            n = min(self.shard_frames, self.num_frames - i * self.shard_frames)
            if shard["num_frames"] != n:
                raise DatasetError(
                    f"{self.path / shard['file']}: manifest says "
                    f"{shard['num_frames']} frames, expected {n}"
                )
            self._offsets.append(
                check_array_file(
                    self.path / shard["file"], shard, (n, *self.frame_shape), np.dtype(np.uint8)
                )
            )

    def _load_episodes(self) -> np.ndarray:
        file = self.path / EPISODES
        entry = self.manifest["files"].get(EPISODES)
        if entry is None:
            raise DatasetError(f"{self.path / MANIFEST}: no entry for {EPISODES}")
        check_array_file(file, entry, (self.num_episodes, 2), np.dtype(np.int64))
        episodes = np.load(file)
        starts, lengths = episodes[:, 0], episodes[:, 1]
        ends = np.cumsum(lengths)
        if (lengths < 1).any() or starts[0] != 0 or (starts[1:] != ends[:-1]).any():
            raise DatasetError(
                f"{file}: episodes must be contiguous (start, length>=1) rows starting at frame 0"
            )
        if ends[-1] != self.num_frames:
            raise DatasetError(
                f"{file}: episodes cover {ends[-1]} frames, manifest says {self.num_frames}"
            )
        return episodes

    # ------------------------------------------------------------------ metadata
    @property
    def fields(self) -> tuple[str, ...]:
        """Per-transition arrays present: a subset of ``("actions", "rewards", "dones")``."""
        return tuple(self._fields)

    @property
    def has_actions(self) -> bool:
        """Whether the dataset stores per-transition actions (``"actions"`` in ``fields``)."""
        return "actions" in self._fields

    @property
    def num_actions(self) -> int | None:
        """Number of discrete actions (``action_space["n"]``); None without a discrete space
        (no actions, or a continuous one)."""
        space = self.manifest.get("action_space")
        if not space or space.get("type", "discrete") != "discrete":
            return None
        return int(space["n"])

    @property
    def continuous_actions(self) -> bool:
        """Whether the action space is a box (actions ``(N, A) float32``)."""
        space = self.manifest.get("action_space")
        return isinstance(space, dict) and space.get("type") == "box"

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(low, high)``, ``(A,) float32`` each, of a continuous action space; else None."""
        if not self.continuous_actions:
            return None
        space = self.manifest["action_space"]
        return np.asarray(space["low"], np.float32), np.asarray(space["high"], np.float32)

    @property
    def episode_returns(self) -> np.ndarray:
        """``(E,) float64`` episode returns; NaN where unknown (cut episodes, video)."""
        return np.array([np.nan if r is None else r for r in self.manifest["episode_returns"]])

    def _field(self, name: str) -> np.ndarray:
        if name not in self._fields:
            raise KeyError(
                f"{self.path} has no {name!r} (action-free video?); "
                f"it stores: {list(self._fields) or 'frames only'}"
            )
        if self._fields[name] is None:
            self._fields[name] = np.load(self.path / f"{name}.npy", mmap_mode="r")
        return self._fields[name]

    @property
    def actions(self) -> np.ndarray:
        """``(N,) int64`` true actions (``(N, A) float32`` in the environment's units for a
        continuous action space), memory-mapped. Raises KeyError if absent."""
        return self._field("actions")

    @property
    def rewards(self) -> np.ndarray:
        """``(N,) float32`` rewards, memory-mapped. Raises KeyError if absent."""
        return self._field("rewards")

    @property
    def dones(self) -> np.ndarray:
        """``(N,) bool`` terminal flags, memory-mapped. Raises KeyError if absent."""
        return self._field("dones")

    # ------------------------------------------------------------------ frames
    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked (DataLoader worker): do not share descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(
                self.path / self.manifest["shards"][shard]["file"], os.O_RDONLY
            )
        return fd

    def read_frames(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read frames ``[start, stop)`` (global indices, may span shards).

        Returns:
            ``(stop - start, H, W, C) uint8`` (``out`` if given).

        Raises:
            IndexError: range outside ``[0, num_frames)``.
            ValueError: ``out`` is not a C-contiguous uint8 array of the right shape.
            DatasetError: a shard became shorter than its header says.
        """
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"frame range [{start}, {stop}) outside [0, {self.num_frames})")
        shape = (stop - start, *self.frame_shape)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            # reshape(-1) below would silently read into a copy of a non-contiguous ``out``
            raise ValueError(
                f"out must be a C-contiguous uint8 array of shape {shape}, "
                f"got {out.dtype} {out.shape} (contiguous={out.flags.c_contiguous})"
            )
        flat = out.reshape(-1)
        pos, done = start, 0
        while pos < stop:
            shard, row = divmod(pos, self.shard_frames)
            n = min(stop - pos, self.shard_frames - row)
            view = flat[done * self._frame_bytes : (done + n) * self._frame_bytes]
            offset = self._offsets[shard] + row * self._frame_bytes
            got = os.preadv(self._fd(shard), [view], offset)
            if got != view.nbytes:
                raise DatasetError(
                    f"{self.path / self.manifest['shards'][shard]['file']}: "
                    f"short read at frame {pos} (file truncated after opening?)"
                )
            pos, done = pos + n, done + n
        return out

    def episode_frames(self, episode: int) -> np.ndarray:
        """All frames of episode ``episode``: ``(T, H, W, C) uint8``."""
        start, length = self.episodes[episode]
        return self.read_frames(int(start), int(start + length))

    def shard_memmap(self, shard: int) -> np.ndarray:
        """Read-only memory map of one shard, ``(n, H, W, C) uint8``, for bulk sequential reads."""
        return np.load(self.path / self.manifest["shards"][shard]["file"], mmap_mode="r")

    # ------------------------------------------------------------------ integrity
    def verify(self, progress=None) -> None:
        """Check every file's sha256 against the manifest (reads the whole dataset).

        Args:
            progress: optional callable ``(file_name, num_bytes)`` called after each file.

        Raises:
            DatasetError: the first file whose hash differs, naming it; a listed file that lies
                outside the dataset directory or is not a regular file; a true action outside
                the manifest's discrete action space ``[0, n)``.
        """
        entries = [(s["file"], s) for s in self.manifest["shards"]]
        entries += list(self.manifest["files"].items())
        for name, entry in entries:
            path = self._listed_file(name)  # never hash a path outside the dataset or a device
            try:
                digest = sha256_file(path)
            except FileNotFoundError:
                raise DatasetError(f"{self.path / name}: file is missing") from None
            if digest != entry["sha256"]:
                raise DatasetError(
                    f"{self.path / name}: sha256 mismatch (expected "
                    f"{entry['sha256'][:16]}..., found {digest[:16]}...); "
                    "the file was altered or corrupted"
                )
            if progress is not None:
                progress(name, entry["bytes"])
        self._check_actions()

    def _check_actions(self) -> None:
        """Refuse true actions outside the discrete action space ``[0, n)`` (read in chunks).

        Raises:
            DatasetError: naming the first offending frame, its action and ``n``.
        """
        n = self.num_actions
        if not self.has_actions or n is None:
            return
        actions = self.actions
        for start in range(0, len(actions), 1 << 20):
            chunk = np.asarray(actions[start : start + (1 << 20)])
            bad = np.flatnonzero((chunk < 0) | (chunk >= n))
            if bad.size:
                t = start + int(bad[0])
                raise DatasetError(
                    f"{self.path / 'actions.npy'}: frame {t} has action {int(actions[t])}, "
                    f"outside the action space [0, {n}) of the manifest ({bad.size} such "
                    f"frame(s) in frames {start}..{start + len(chunk) - 1})"
                )

    def close(self) -> None:
        """Close open file descriptors (reopened on demand)."""
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict[str, Any]:  # picklable for spawned DataLoader workers
        state = self.__dict__.copy()
        state["_fds"], state["_fields"] = {}, dict.fromkeys(self._fields)
        return state

    def __enter__(self) -> LapoDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LapoDataset({str(self.path)!r}, frames={self.num_frames}, "
            f"episodes={self.num_episodes}, frame_shape={self.frame_shape} uint8, "
            f"fields={list(self._fields)})"
        )


def open_dataset(path: str | os.PathLike) -> LapoDataset:
    """Open the dataset at ``path`` (see ``LapoDataset``). Raises DatasetError when invalid."""
    return LapoDataset(path)


def manifest_digest(dataset: LapoDataset) -> str:
    """sha256 of the dataset's manifest (which holds every file's sha256): the data's identity."""
    return hashlib.sha256((dataset.path / "manifest.json").read_bytes()).hexdigest()
