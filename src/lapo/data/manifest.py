"""A lapo dataset's manifest, checked before anything reads it: format, schema version,
required keys and the JSON type of every value (``load_manifest``), and each listed array file
against its manifest entry (``check_array_file``). The format itself: ``lapo.data.format``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lapo.data.format import (
    FORMAT_NAME,
    MANIFEST,
    SCHEMA_VERSION,
    DatasetError,
    read_npy_header,
)

_REQUIRED_KEYS = (
    "frame_shape", "num_frames", "num_episodes", "shard_frames", "shards", "files", "fields",
    "episode_returns",
)  # fmt: skip


def load_manifest(path: Path) -> dict[str, Any]:
    """The checked manifest of the dataset directory ``path``.

    Raises:
        DatasetError: no such directory, no manifest, not JSON, another format or schema
            version, a required key missing or a value of the wrong type (named).
    """
    if path.is_file() and path.name == MANIFEST:
        raise DatasetError(f"{path}: a dataset's manifest; pass its directory {path.parent}")
    if path.is_file():
        raise DatasetError(
            f"{path}: a file, not a lapo dataset directory; import it first (lapo data import "
            f"{path} --out DATASET; in Python lapo.data.import_arrays.import_arrays and friends)"
        )
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset directory")
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"{file}: manifest is missing; {path} is not a lapo dataset (videos, arrays, LeRobot "
            f"and Minari data are imported first: lapo data import {path} --out DATASET)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{file}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{file}: expected a JSON object, found {type(manifest).__name__}")
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(
            f"{file}: expected format {FORMAT_NAME!r}, got {manifest.get('format')!r}"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"{file}: expected schema_version {SCHEMA_VERSION}, "
            f"got {manifest.get('schema_version')!r}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise DatasetError(f"{file}: manifest lacks required keys {missing}")
    _check_manifest_types(manifest, file)
    return manifest


def _is_count(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _file_entry_ok(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and _is_count(entry.get("bytes"))
        and isinstance(entry.get("sha256"), str)
    )


def _check_manifest_types(m: dict[str, Any], file: Path) -> None:
    """Refuse a manifest whose values have the wrong JSON type, before anything uses them.

    Raises:
        DatasetError: naming the key, what was expected and what was found.
    """

    def bad(key: str, expected: str) -> DatasetError:
        value = repr(m.get(key))
        value = value if len(value) <= 60 else value[:57] + "..."
        return DatasetError(f"{file}: {key!r} must be {expected}, found {value}")

    shape = m["frame_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_count(s, 1) for s in shape)):
        raise bad("frame_shape", "a list of 3 positive integers [H, W, C]")
    for key in ("num_frames", "num_episodes"):
        if not _is_count(m[key]):
            raise bad(key, "an integer >= 0")
    if not _is_count(m["shard_frames"], 1):
        raise bad("shard_frames", "an integer >= 1")
    shards = m["shards"]
    if not isinstance(shards, list) or not all(
        _file_entry_ok(s) and _is_count(s.get("num_frames")) for s in shards
    ):
        raise bad("shards", 'a list of {"file", "num_frames", "bytes", "sha256"} objects')
    files = m["files"]
    if not isinstance(files, dict) or not all(_file_entry_ok(e) for e in files.values()):
        raise bad("files", 'an object of {"bytes", "sha256"} entries')
    fields = m["fields"]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise bad("fields", "a list of names")
    returns = m["episode_returns"]
    if not isinstance(returns, list) or not all(
        r is None or (isinstance(r, int | float) and not isinstance(r, bool)) for r in returns
    ):
        raise bad("episode_returns", "a list of numbers or nulls")
    space = m.get("action_space")
    if space is not None:
        if not isinstance(space, dict):
            raise bad("action_space", "an object or null")
        if space.get("type", "discrete") == "discrete" and not _is_count(space.get("n"), 1):
            raise DatasetError(
                f"{file}: a discrete action_space needs 'n', an integer >= 1, found "
                f"{space.get('n')!r}"
            )
    if "actions" in fields and space is None:
        raise DatasetError(f"{file}: the dataset stores actions but has no action_space")


def check_array_file(path: Path, entry: dict[str, Any], shape: tuple, dtype: np.dtype) -> int:
    """Check size, shape and dtype of a .npy file against the manifest; return data offset."""
    if not path.is_file():
        raise DatasetError(f"{path}: file is missing (listed in the manifest)")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise DatasetError(
            f"{path}: expected {entry['bytes']} bytes from the manifest, found {size} "
            "(truncated or altered)"
        )
    got_shape, got_dtype, offset = read_npy_header(path)
    if got_shape != shape or got_dtype != dtype:
        raise DatasetError(f"{path}: expected array {dtype} {shape}, found {got_dtype} {got_shape}")
    if offset + int(np.prod(shape)) * dtype.itemsize != size:
        raise DatasetError(f"{path}: data size does not match its header (truncated?)")
    return offset
