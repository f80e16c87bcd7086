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


def _folder_format(folder: Path, video_extensions: Sequence[str]) -> str:
    if (folder / "meta" / "info.json").is_file():
        return "lerobot"
    if any((f / "main_data.hdf5").is_file() for f in (folder, folder / "data")):
        return "minari"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if any(p.suffix.lower().lstrip(".") in video_extensions for p in files):
        return "video"
    arrays = [p for p in files if p.suffix.lower() in (".npy", ".npz")]
    if not arrays:
        raise ValueError(
            f"{folder}: found neither video files ({', '.join(video_extensions)}) "
            "nor .npy/.npz files"
        )
    return _file_format(arrays[0], video_extensions)


def _file_format(path: Path, video_extensions: Sequence[str]) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in video_extensions:
        return "video"
    if suffix == "npy":
        return "arrays"
    if suffix == "npz":
        return _npz_format(path)
    raise ValueError(
        f"{path}: unsupported source; expected video files, .npy or .npz files, or a folder of "
        "them (or pass --format)"
    )


def detect_import_format(sources: Sequence[Path]) -> str:
    """Return ``video``, ``arrays``, ``lapo-release``, ``lerobot`` or ``minari`` for the given
    import sources, each told apart on its own; all of them must need the same importer.

    A folder with ``meta/info.json`` is ``lerobot``; one with ``main_data.hdf5`` (in it or in
    its ``data/``) is ``minari``; one holding video files is ``video``; a folder of .npz/.npy
    files is judged by its first file. Video files are ``video`` (so video files and folders
    of them import together); .npy files are ``arrays``; .npz files are ``lapo-release`` when
    they have the release's keys (obs, ta, done), ``arrays`` when they have ``frames``.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: the format of a source cannot be told, or the sources need different
            importers; the message names the source(s).
    """
    from lapo.data.import_video import VIDEO_EXTENSIONS

    sources = [Path(s) for s in sources]
    for s in sources:
        if not s.exists():
            raise FileNotFoundError(f"import source {s} does not exist")
    formats = {
        s: _folder_format(s, VIDEO_EXTENSIONS) if s.is_dir() else _file_format(s, VIDEO_EXTENSIONS)
        for s in sources
    }
    if len(set(formats.values())) > 1:
        listed = ", ".join(f"{s.name}: {fmt}" for s, fmt in formats.items())
        raise ValueError(
            f"the sources need different importers ({listed}); import one kind at a time"
        )
    return formats[sources[0]]
