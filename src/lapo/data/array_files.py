"""Reading and checking numpy array files (.npy / .npz) for the importers: headers without
the data, one array at a time, and the checks every importer applies to frames and per-frame
vectors (``lapo.data.import_arrays``, ``lapo.data.import_release``)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lapo.data.format import DatasetError

#: One path or several (files or folders), as the importers take them.
PathArg = str | os.PathLike | Iterable[str | os.PathLike]


def given_paths(paths: PathArg) -> list[Path]:
    """The paths as given (one path or several), as a list."""
    return [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]


def expand_paths(paths: PathArg, suffixes: tuple[str, ...]) -> list[Path]:
    """Files given directly, plus the files of given folders (sorted by name) with ``suffixes``.

    Raises:
        DatasetError: a missing path, a file of another suffix, a folder without such files, no
            file at all, or one file named twice (directly or through its folder).
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes
            )
            if not found:
                raise DatasetError(f"{path}: no {' or '.join(suffixes)} files in this folder")
            files += found
        elif not path.is_file():
            raise DatasetError(f"{path}: no such file or folder")
        elif path.suffix.lower() not in suffixes:
            raise DatasetError(f"{path}: expected a {' or '.join(suffixes)} file")
        else:
            files.append(path)
    if not files:
        raise DatasetError("no input files given")
    seen: set[Path] = set()
    for f in files:  # a file named twice (directly, or also through its folder) would import twice
        if f.resolve() in seen:
            raise DatasetError(f"{f}: named twice among the sources")
        seen.add(f.resolve())
    return files


def _read_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(shape), dtype


def array_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` of a .npy (as "frames") or of each .npz member; reads no data."""
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as fh:
                return {"frames": _read_header(fh)}
        headers = {}
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if member.endswith(".npy"):
                    with zf.open(member) as fh:
                        headers[member[: -len(".npy")]] = _read_header(fh)
        return headers
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable numpy {path.suffix} file ({exc})") from None


def load_array(path: Path, key: str) -> np.ndarray:
    """One array: a .npy is memory-mapped read-only, a .npz member is loaded."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r")
        with np.load(path) as npz:
            return npz[key]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot read {key!r} ({exc})") from None


def check_frame_array(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Frames must be ``(N >= 1, H, W, C) uint8`` with channels last."""
    if len(shape) != 4:
        hint = "; add a channel axis to grayscale frames (x[..., None])" if len(shape) == 3 else ""
        raise DatasetError(f"{path}: {key} must be (N, H, W, C), got shape {shape}{hint}")
    if shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
        raise DatasetError(
            f"{path}: {key} of shape {shape} look channel-first (N, C, H, W); frames must be "
            "channel-last (N, H, W, C): transpose them with x.transpose(0, 2, 3, 1)"
        )
    if dtype != np.uint8:
        raise DatasetError(
            f"{path}: {key} must be uint8 pixels in 0..255, got {dtype}; convert floats in "
            "[0, 1] with (x * 255).round().astype(np.uint8)"
        )
    if shape[0] < 1 or min(shape[1:]) < 1:
        raise DatasetError(f"{path}: {key} is empty (shape {shape})")


def check_vector(path: Path, key: str, shape, dtype: np.dtype, n: int, kinds: str) -> None:
    """A per-frame array must be ``(n,)`` (or ``(n, 1)``) with dtype kind in ``kinds``."""
    if shape not in ((n,), (n, 1)):
        raise DatasetError(f"{path}: {key} must have shape ({n},) like the frames, got {shape}")
    names = {"b": "bool", "i": "signed int", "u": "unsigned int", "f": "float"}
    if dtype.kind not in kinds:
        want = " or ".join(names[k] for k in kinds)
        raise DatasetError(f"{path}: {key} must be {want}, got {dtype}")
