"""Detect which importer a ``lapo data import`` source needs (``--format auto``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

RELEASE_KEYS = {"obs", "ta", "done"}


def _npz_format(path: Path) -> str:
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
    if RELEASE_KEYS <= keys:
        return "lapo-release"
    if "frames" in keys:
        return "arrays"
    raise ValueError(
        f"{path}: cannot tell the format from its keys {sorted(keys)}; expected 'frames' "
        f"(numpy arrays) or {sorted(RELEASE_KEYS)} (LAPO release chunks)"
    )


def _kind(source: Path, video_extensions: Sequence[str]) -> str:
    suffix = source.suffix.lower().lstrip(".")
    if source.is_dir():
        return "folder"
    if suffix in video_extensions:
        return "video"
    return suffix if suffix in ("npy", "npz") else "unsupported"


def detect_import_format(sources: Sequence[Path]) -> str:
    """Return ``video``, ``arrays``, ``lapo-release``, ``lerobot`` or ``minari`` for the given
    import sources.

    A folder with ``meta/info.json`` is ``lerobot``; one with ``main_data.hdf5`` (in it or in
    its ``data/``) is ``minari``.

    A folder holding video files, or video files named, is ``video``; .npy files are
    ``arrays``; .npz files are ``lapo-release`` when they have the release's keys (obs, ta,
    done), ``arrays`` when they have ``frames``. A folder of .npz/.npy files is judged by its
    first file.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: the format cannot be told; the message lists what was found.
    """
    from lapo.data.import_video import VIDEO_EXTENSIONS

    sources = [Path(s) for s in sources]
    for s in sources:
        if not s.exists():
            raise FileNotFoundError(f"import source {s} does not exist")
    kinds = {s: _kind(s, VIDEO_EXTENSIONS) for s in sources}
    if set(kinds.values()) == {"video"}:
        return "video"  # single video files
    if len(sources) > 1:  # several sources are one kind: name the one that is not
        odd = [s for s, kind in kinds.items() if kind == "unsupported"]
        if odd:
            raise ValueError(
                f"{odd[0]}: unsupported source; expected video files, .npy or .npz files, or "
                "one folder (or pass --format)"
            )
        if len(set(kinds.values())) > 1:
            listed = ", ".join(f"{s.name}: {kind}" for s, kind in kinds.items())
            raise ValueError(f"the sources mix kinds ({listed}); import one kind at a time")
    if len(sources) == 1 and sources[0].is_dir():
        folder = sources[0]
        if (folder / "meta" / "info.json").is_file():
            return "lerobot"
        if any((f / "main_data.hdf5").is_file() for f in (folder, folder / "data")):
            return "minari"
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if any(p.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS for p in files):
            return "video"
        arrays = [p for p in files if p.suffix.lower() in (".npy", ".npz")]
        if not arrays:
            raise ValueError(
                f"{folder}: found neither video files ({', '.join(VIDEO_EXTENSIONS)}) "
                "nor .npy/.npz files"
            )
        sources = arrays[:1]
    first = sources[0]
    if first.suffix.lower() == ".npy":
        return "arrays"
    if first.suffix.lower() == ".npz":
        return _npz_format(first)
    raise ValueError(
        f"{first}: unsupported source; expected a folder of videos, .npy or .npz files "
        "(or pass --format)"
    )
