"""Write lapo datasets episode by episode, without holding the dataset in memory.

Everything is written into a temporary sibling directory (``<out>.partial-<pid>``, marked as
lapo's by a ``.lapo-partial`` file); frame shards, the per-transition arrays, the episode index
and the manifest are written under temporary names, fsynced and renamed when complete
(``lapo.paths.atomic_file``). Only ``close()`` moves the finished dataset to its final path, so a
crash never leaves a half-written dataset under the final name and never touches an existing
dataset that was not explicitly to be overwritten. What a writer killed by SIGKILL leaves (its
``<out>.partial-<pid>``, or the previous dataset parked at ``<out>.old-<pid>`` while being
replaced) is cleaned up by the next writer of ``<out>`` once that pid no longer runs
(``clean_leftovers``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lapo.data.format import (
    EPISODES,
    FORMAT_NAME,
    FRAMES_DIR,
    MANIFEST,
    SCHEMA_VERSION,
    TRANSITION_ARRAYS,
    HashingWriter,
    save_npy_hashed,
    shard_name,
    transition_array_layout,
)
from lapo.paths import atomic_file, fsync_dir, pid_alive, write_json_atomic
from lapo.safety import check_replaceable, exclusive, lapo_made, prepare_output

DEFAULT_SHARD_FRAMES = 8192  # 96 MiB per shard at 64x64x3
#: Marker file inside a writer's temporary directory: it is lapo's and may be deleted when dead.
PARTIAL_MARKER = ".lapo-partial"


def clean_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writers of the dataset ``path`` left beside it; call it holding the
    dataset's lock (``exclusive(path, inside=False)``), as ``DatasetWriter`` does.

    Only entries of dead processes (``pid_alive``) that are lapo's own are touched:

    - ``<name>.partial-<pid>``: a directory holding the ``.lapo-partial`` marker; deleted.
    - ``<name>.old-<pid>``: a lapo dataset parked while being replaced; deleted when ``path``
      exists (the replacement finished), else renamed back to ``path`` (killed between the two
      renames: the previous dataset is restored).

    Returns:
        The entries removed or restored.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(re.escape(path.name) + r"\.(partial|old)-(\d+)")
    touched = []
    for entry in sorted(parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(match[2])
        if pid == os.getpid() or pid_alive(pid):
            continue
        if match[1] == "partial" and (entry / PARTIAL_MARKER).is_file():
            shutil.rmtree(entry)
        elif match[1] == "old" and lapo_made(entry) == "lapo dataset":
            if path.exists() or path.is_symlink():
                shutil.rmtree(entry)
            else:
                os.replace(entry, path)
        else:
            continue
        touched.append(entry)
    return touched


def check_output_dir(
    path: str | os.PathLike,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Refuse an existing ``path`` unless ``overwrite``; return it as a Path.

    Call this before any expensive work so that a run fails fast. ``overwrite`` replaces only a
    lapo dataset or run directory (or an empty directory), never a file or a foreign directory,
    and never an output that is, contains or lies inside one of ``inputs``
    (``lapo.safety.prepare_output``, the one function every ``--overwrite`` goes through).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False, or lapo did not make it.
        ValueError: ``path`` overlaps one of ``inputs``.
    """
    return prepare_output(path, overwrite, inputs)


def _check_box_actions(values: np.ndarray, space: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``values (T, A)`` are finite floats within the box's bounds."""
    if not np.issubdtype(values.dtype, np.floating) or not np.isfinite(values).all():
        raise ValueError(f"continuous actions must be finite floats, got {values.dtype}")
    low, high = np.asarray(space["low"], np.float64), np.asarray(space["high"], np.float64)
    if len(values) and ((values < low).any() or (values > high).any()):
        raise ValueError(
            f"actions must lie in the bounds [{low.tolist()}, {high.tolist()}], got range "
            f"[{values.min(0).tolist()}, {values.max(0).tolist()}]"
        )


class DatasetWriter:
    """Append episodes to a new dataset directory.

    Args:
        path: final dataset directory.
        frame_shape: ``(H, W, C)`` of every frame.
        fields: per-transition arrays to store, a subset of ``("actions", "rewards", "dones")``;
            empty for action-free video.
        source: free-form description written to the manifest (e.g. game and policy).
        action_space: e.g. ``{"type": "discrete", "n": 15, "meanings": [...]}``, or for
            continuous actions ``{"type": "box", "shape": [A], "low": [...], "high": [...]}``
            (``lapo.envs.ActionSpec.manifest``); None if no actions.
        shard_frames: frames per shard file.
        overwrite: replace an existing dataset at ``path`` (only once ``close`` succeeds; only a
            lapo dataset or run directory, see ``check_output_dir``).

    The writer holds the dataset's lock (``lapo.safety.exclusive``, the sibling file
    ``.<name>.lapo.lock``) from construction until ``close`` or ``abort``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (raised before writing).
        lapo.safety.InUseError: another process is writing a dataset at ``path``.
        ValueError: invalid frame shape, field name or shard size.

    Use as a context manager: leaving the block with an exception discards the partial output.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        frame_shape: Sequence[int],
        fields: Sequence[str] = (),
        source: Mapping[str, Any] | None = None,
        action_space: Mapping[str, Any] | None = None,
        shard_frames: int = DEFAULT_SHARD_FRAMES,
        overwrite: bool = False,
    ) -> None:
        self._lock = exclusive(path, inside=False)
        self._lock.__enter__()  # released by close() or abort()
        try:
            self._setup(path, frame_shape, fields, source, action_space, shard_frames, overwrite)
        except BaseException:
            self._release()
            raise

    def _setup(self, path, frame_shape, fields, source, action_space, shard_frames, overwrite):
        clean_leftovers(path)  # of killed writers (we hold the lock): before the checks
        self.path = check_output_dir(path, overwrite)
        frame_shape = tuple(int(s) for s in frame_shape)
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(
                f"frame_shape must be (H, W, C) with positive sizes, got {frame_shape}"
            )
        unknown = set(fields) - set(TRANSITION_ARRAYS)
        if unknown:
            raise ValueError(
                f"unknown fields {sorted(unknown)}; expected a subset of {list(TRANSITION_ARRAYS)}"
            )
        if "actions" in fields and action_space is None:
            raise ValueError("a dataset with actions needs an action_space")
        if shard_frames < 1:
            raise ValueError(f"shard_frames must be >= 1, got {shard_frames}")
        for name, value in (("source", source), ("action_space", action_space)):
            try:  # fail now, not in close() after all frames are written
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be JSON-serializable: {exc}") from None
        self.frame_shape = frame_shape
        self.fields = tuple(f for f in TRANSITION_ARRAYS if f in fields)
        self.source = dict(source or {})
        self.action_space = dict(action_space) if action_space is not None else None
        self.shard_frames = shard_frames
        self.overwrite = overwrite
        self.num_frames = 0
        self._tmp = self.path.with_name(f"{self.path.name}.partial-{os.getpid()}")
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        (self._tmp / FRAMES_DIR).mkdir(parents=True)
        (self._tmp / PARTIAL_MARKER).write_text(f"{os.getpid()}\n")
        self._buffer = np.empty((shard_frames, *frame_shape), dtype=np.uint8)
        self._buffered = 0
        self._shards: list[dict[str, Any]] = []
        self._episodes: list[tuple[int, int]] = []
        self._returns: list[float | None] = []
        # Per-transition arrays are appended as raw bytes and become .npy files in close().
        self._raw = {f: open(self._tmp / f"{f}.raw", "wb") for f in self.fields}
        self._extra: dict[str, np.ndarray] = {}
        self._closed = False

    def add_file(self, name: str, array: np.ndarray) -> None:
        """Store ``array`` as ``name`` (a ``.npy`` file at the top of the dataset) when the
        dataset is closed, listed with its sha256 in the manifest's ``files`` (checked by
        ``verify``). For data the format has no field for, e.g. continuous actions an importer
        keeps (``(N, D) float32``, one row per frame).

        Raises:
            ValueError: ``name`` is not a plain ``*.npy`` name, is a name the format uses, or was
                added before.
        """
        reserved = {EPISODES, *(f"{f}.npy" for f in TRANSITION_ARRAYS)}
        if "/" in name or "\\" in name or not name.endswith(".npy") or name.startswith("."):
            raise ValueError(f"extra file name must be a plain NAME.npy, got {name!r}")
        if name in reserved or name in self._extra:
            raise ValueError(f"{name} is already a file of the dataset")
        self._extra[name] = np.asarray(array)

    def _release(self) -> None:
        """Release the dataset's lock (once)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.__exit__(None, None, None)

    @property
    def num_episodes(self) -> int:
        """Episodes added so far."""
        return len(self._episodes)

    def add_episode(
        self,
        frames: np.ndarray,
        *,
        actions: np.ndarray | None = None,
        rewards: np.ndarray | None = None,
        dones: np.ndarray | None = None,
        episode_return: float | None = None,
    ) -> None:
        """Append one episode.

        Args:
            frames: ``(T, H, W, C) uint8``, T >= 1.
            actions: ``(T,)`` integers, a_t taken at frame t (``(T, A)`` floats in the box's
                bounds for a continuous action space); required iff the writer has actions.
            rewards: ``(T,)`` floats, reward for a_t; required iff the writer has rewards.
            dones: ``(T,)`` bools, True where a_t ended the episode; required iff it has dones.
            episode_return: the episode's return if known (None or NaN for cut or unrewarded
                episodes; stored as null).

        Raises:
            ValueError: wrong dtype or shape, or a field given/missing contrary to ``fields``.
        """
        if self._closed:
            raise RuntimeError("add_episode after close()")
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:] != self.frame_shape or len(frames) < 1:
            raise ValueError(
                f"frames must be (T>=1, {', '.join(map(str, self.frame_shape))}) uint8, "
                f"got {frames.dtype} {frames.shape}"
            )
        given = {"actions": actions, "rewards": rewards, "dones": dones}
        for name, values in given.items():
            if (values is not None) != (name in self.fields):
                want = "required" if name in self.fields else "not stored by this writer"
                raise ValueError(f"{name} is {want} (writer fields: {list(self.fields)})")
        # Validate every field before writing any, so that a rejected episode leaves no trace.
        arrays = {}
        for name in self.fields:
            values = np.asarray(given[name])
            tail, dtype = transition_array_layout(name, self.action_space)
            if values.shape != (len(frames), *tail):
                raise ValueError(
                    f"{name} must have shape {(len(frames), *tail)}, got {values.shape}"
                )
            if name == "actions" and tail:
                _check_box_actions(values, self.action_space)
                arrays[name] = values.astype(dtype)
                continue
            if name == "actions" and not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"actions must be integers, got {values.dtype}")
            n = self.action_space.get("n") if self.action_space else None
            if name == "actions" and n is not None and len(values):
                if values.min() < 0 or values.max() >= n:
                    raise ValueError(
                        f"actions must be in [0, {n}), got range [{values.min()}, {values.max()}]"
                    )
            arrays[name] = values.astype(TRANSITION_ARRAYS[name])
        for name, values in arrays.items():
            self._raw[name].write(values.tobytes())
        self._episodes.append((self.num_frames, len(frames)))
        known = episode_return is not None and not np.isnan(episode_return)
        self._returns.append(float(episode_return) if known else None)  # NaN is not JSON
        self._append_frames(frames)

    def _append_frames(self, frames: np.ndarray) -> None:
        while len(frames):
            n = min(len(frames), self.shard_frames - self._buffered)
            self._buffer[self._buffered : self._buffered + n] = frames[:n]
            self._buffered += n
            self.num_frames += n
            frames = frames[n:]
            if self._buffered == self.shard_frames:
                self._flush_shard()

    def _flush_shard(self) -> None:
        name = shard_name(len(self._shards))
        entry = save_npy_hashed(self._tmp / name, self._buffer[: self._buffered])
        self._shards.append({"file": name, "num_frames": self._buffered, **entry})
        self._buffered = 0

    def _finish_transition_array(self, name: str) -> dict[str, Any]:
        self._raw[name].close()
        raw = self._tmp / f"{name}.raw"
        tail, dtype = transition_array_layout(name, self.action_space)
        out = self._tmp / f"{name}.npy"
        with atomic_file(out) as fh, open(raw, "rb") as src:
            writer = HashingWriter(fh)
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (self.num_frames, *tail),
            }
            np.lib.format.write_array_header_1_0(writer, header)
            while chunk := src.read(1 << 22):
                writer.write(chunk)
        raw.unlink()
        return {"bytes": writer.bytes_written, "sha256": writer.hexdigest()}

    def close(self) -> dict[str, Any]:
        """Finish the dataset and move it to its final path; return the manifest. With
        ``overwrite``, an earlier dataset there that holds the same (``_same_as_earlier``) is
        kept as it is, and its manifest returned.

        Raises:
            ValueError: no frames were added (an empty dataset is never written).
        """
        if self._closed:
            raise RuntimeError("close() called twice")
        if self.num_frames == 0:
            self.abort()
            raise ValueError(f"refusing to write an empty dataset to {self.path}: no episodes")
        try:
            if self._buffered:
                self._flush_shard()
            self._buffer = None
            files = {
                EPISODES: save_npy_hashed(
                    self._tmp / EPISODES, np.asarray(self._episodes, dtype=np.int64)
                )
            }
            for name in self.fields:
                files[f"{name}.npy"] = self._finish_transition_array(name)
            for name, array in self._extra.items():
                files[name] = save_npy_hashed(self._tmp / name, array)
            manifest = self._manifest(files)
            earlier = self._same_as_earlier(manifest)
            if earlier is not None:  # the same data again: keep the dataset there as it is
                self.abort()
                return earlier
            write_json_atomic(self._tmp / MANIFEST, manifest)
            self._move_into_place()
        except BaseException:
            self.abort()  # never leave a partial directory behind, even when close() fails
            raise
        self._closed = True
        self._release()
        return manifest

    def _same_as_earlier(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The manifest of the dataset ``overwrite`` would replace, when the new one holds the
        same: every file's sha256, the source and its options, all equal but the creation time.
        Replacing it would give the same data a new manifest digest, the identity ``lapo run
        --data`` records, so the runs on it would count it as other data; it is kept instead
        (and a run reading it is not disturbed), once every file it lists verifies (sha256); a
        damaged copy is replaced. None otherwise."""
        if not self.overwrite or not (self.path / MANIFEST).is_file():
            return None
        try:
            earlier = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(earlier, dict):
            return None
        drop = ("created",)
        same = {k: v for k, v in earlier.items() if k not in drop} == {
            k: v for k, v in json.loads(json.dumps(manifest)).items() if k not in drop
        }
        if not same:
            return None
        from lapo.data.reader import LapoDataset  # the reader imports this module

        try:  # a damaged copy (a shard truncated or deleted) is replaced, not kept
            with LapoDataset(self.path) as dataset:
                dataset.verify()
        except Exception:  # noqa: BLE001 - any failure to read it back means: replace it
            return None
        return earlier

    def _manifest(self, files: dict[str, Any]) -> dict[str, Any]:
        lengths = np.asarray([length for _, length in self._episodes])
        known = [r for r in self._returns if r is not None]
        from lapo import __version__

        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "lapo_version": __version__,
            "source": self.source,
            "frame_shape": list(self.frame_shape),
            "frame_dtype": "uint8",
            "action_space": self.action_space,
            "fields": list(self.fields),
            "num_frames": self.num_frames,
            "num_episodes": len(self._episodes),
            "num_transitions": int((lengths - 1).sum()),
            "shard_frames": self.shard_frames,
            "shards": self._shards,
            "files": files,
            "episode_returns": self._returns,
            "mean_episode_return": float(np.mean(known)) if known else None,
        }

    def _move_into_place(self) -> None:
        (self._tmp / PARTIAL_MARKER).unlink()
        fsync_dir(self._tmp / FRAMES_DIR)
        fsync_dir(self._tmp)
        old = None
        if self.path.exists() or self.path.is_symlink():
            if not self.overwrite:  # created by someone else since __init__ checked
                raise FileExistsError(
                    f"{self.path} appeared while this dataset was being written; "
                    "not replacing it without overwrite"
                )
            check_replaceable(self.path)  # only what lapo made, checked again at the last moment
            old = self.path.with_name(f"{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        try:
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)
        except BaseException:
            if old is not None:
                os.replace(old, self.path)  # put the previous dataset back
            raise
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()

    def abort(self) -> None:
        """Discard everything written so far; the final path is left untouched."""
        for fh in getattr(self, "_raw", {}).values():
            fh.close()
        if hasattr(self, "_tmp"):
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True
        self._release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()
