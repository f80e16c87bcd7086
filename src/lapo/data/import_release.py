"""Import the original LAPO release's npz chunks as a lapo dataset (``--format lapo-release``).

Chunk layout (PAPER.md): keys obs (N, 64, 64, 3) uint8, ta (true action), done, rewards,
ep_returns, values; 32,768 frames per train chunk and 4,096 per test chunk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lapo.data.array_files import (
    PathArg,
    array_headers,
    check_frame_array,
    check_vector,
    expand_paths,
    given_paths,
    load_array,
)
from lapo.data.format import DatasetError
from lapo.data.writer import DEFAULT_SHARD_FRAMES, DatasetWriter, check_output_dir
from lapo.envs.games import ACTION_MEANINGS

#: Arrays a release chunk must hold (``values`` may be present too; it is ignored).
RELEASE_KEYS = ("obs", "ta", "done", "rewards", "ep_returns")


def _inspect_release_chunk(path: Path) -> tuple[int, ...]:
    """Check one release chunk's arrays (names, shapes, dtypes); return the obs shape."""
    headers = array_headers(path)
    missing = [key for key in RELEASE_KEYS if key not in headers]
    if missing:
        raise DatasetError(
            f"{path}: missing {missing}; a LAPO release chunk holds {list(RELEASE_KEYS)} "
            f"(plus 'values', ignored), found {sorted(headers)}"
        )
    shape, dtype = headers["obs"]
    check_frame_array(path, "obs", shape, dtype)
    kinds = {"ta": "iuf", "done": "biu", "rewards": "iuf", "ep_returns": "iuf"}
    for key, kind in kinds.items():
        check_vector(path, key, *headers[key], shape[0], kind)
    return shape


def _write_release_chunk(writer: DatasetWriter, path: Path) -> None:
    """Split one chunk into episodes at its done flags and append them to ``writer``."""
    obs = load_array(path, "obs")
    ta, done, rewards, ep_returns = (load_array(path, k).reshape(-1) for k in RELEASE_KEYS[1:])
    if (ta != np.round(ta)).any() or ta.min() < 0 or ta.max() >= len(ACTION_MEANINGS):
        raise DatasetError(
            f"{path}: ta must hold whole numbers in [0, {len(ACTION_MEANINGS)}), got range "
            f"[{ta.min()}, {ta.max()}]"
        )
    if done.dtype != np.bool_ and not np.isin(done, (0, 1)).all():
        raise DatasetError(f"{path}: done must be bool or 0/1, got other values")
    done = done.astype(bool)
    stops = np.flatnonzero(done) + 1  # done[t]: ta[t] ended the episode, obs[t] is its last frame
    bounds = np.unique(np.r_[0, stops, len(done)])
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        writer.add_episode(
            obs[start:stop],
            actions=ta[start:stop].astype(np.int64),
            rewards=rewards[start:stop],
            dones=done[start:stop],
            episode_return=float(ep_returns[stop - 1]) if done[stop - 1] else None,
        )


def import_lapo_release(
    paths: PathArg,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Import the original LAPO release's .npz chunks (one game's train or test split).

    Each chunk holds ``obs`` ``(N, 64, 64, 3) uint8``, ``ta`` ``(N,)`` or ``(N, 1)`` true action
    indices in ``[0, 15)``, ``done`` ``(N,)`` bool, ``rewards`` ``(N,)`` float, ``ep_returns``
    ``(N,)`` float (the return of the episode, stored per frame) and ``values`` (ignored).

    Semantics adopted here:

    - ``done[t]`` is True when action ``ta[t]`` ended the episode: ``obs[t]`` is that episode's
      last frame and ``obs[t + 1]`` starts a new one.
    - Episodes never cross files, since the release does not say that chunks are consecutive:
      the frames after a chunk's last done become an episode of their own with unknown return
      (None). Likewise a chunk's first episode may have begun in an earlier chunk.
    - The return of an episode that ends with a done is ``ep_returns`` at its done frame (the
      recorded return of the whole episode, even when its first frames are in another chunk).
    - Stored fields: actions (``ta``), rewards and dones; the action space is Procgen's 15
      actions with their meanings (``lapo.envs.games.ACTION_MEANINGS``).

    Args:
        paths: a path or a list of paths: .npz chunks, or folders whose ``*.npz`` files are
            taken sorted by name.
        out: dataset directory to create.
        overwrite: replace an existing dataset at ``out`` (only once the import has succeeded).
        shard_frames: frames per shard file.
        progress: show a tqdm bar of chunks written.

    Returns:
        The manifest; its source is ``{"kind": "lapo_release", "files": [absolute paths]}``.

    Raises:
        DatasetError: a missing or unreadable chunk, a missing array (the message names the file,
            the missing keys and the expected ones), a wrong shape or dtype, chunks with different
            frame shapes (all raised before writing), or ``ta`` outside ``[0, 15)``
            (raised while writing; nothing is left at ``out``).
        FileExistsError: ``out`` exists and ``overwrite`` is False, or ``overwrite`` is True but
            ``out`` is not a lapo dataset or run directory (raised before any work).
        ValueError: ``out`` is, contains or lies inside a source (raised before any work).
        lapo.safety.InUseError: another lapo process is writing ``out``.
    """
    files = expand_paths(paths, (".npz",))
    check_output_dir(out, overwrite, inputs=[*given_paths(paths), *files])
    shapes = [_inspect_release_chunk(path) for path in files]
    for path, shape in zip(files, shapes, strict=True):
        if shape[1:] != shapes[0][1:]:
            raise DatasetError(
                f"{path}: obs frames are {shape[1:]} but {files[0]} has {shapes[0][1:]}; all "
                "chunks must have the same frame shape"
            )
    space = {"type": "discrete", "n": len(ACTION_MEANINGS), "meanings": list(ACTION_MEANINGS)}
    with DatasetWriter(
        out,
        frame_shape=shapes[0][1:],
        fields=("actions", "rewards", "dones"),
        source={"kind": "lapo_release", "files": [str(p.resolve()) for p in files]},
        action_space=space,
        shard_frames=shard_frames,
        overwrite=overwrite,
    ) as writer:
        for path in tqdm(files, desc="chunks", unit="chunk", disable=not progress):
            _write_release_chunk(writer, path)
        return writer.close()
