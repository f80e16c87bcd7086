"""Paths taken from metadata (a dataset manifest's file list, a checkpoint's tensor file name):
confined to their directory and regular files, so that untrusted metadata can never make lapo read
outside it (``../../etc/hostname``) or hang on a device (``/dev/zero``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def confined_file(
    directory: str | os.PathLike,
    name: Any,
    what: str,
    error: type[Exception] = ValueError,
) -> Path:
    """``directory / name`` when it resolves inside ``directory`` and is a regular file.

    Args:
        name: a relative path taken from metadata (``what`` describes where, for the message).
        error: the exception class to raise (e.g. ``DatasetError``, ``CheckpointError``).

    Raises:
        error: ``name`` is not a string, is absolute, leaves ``directory`` (``..``, a symbolic
            link pointing out) or is not a regular file (a device such as ``/dev/zero``, a
            directory, a FIFO).
        FileNotFoundError: the file is missing.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name or os.path.isabs(name):
        raise error(f"{what}: file name {name!r} must be a relative path inside {directory}")
    path = directory / name
    root = directory.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise error(f"{what}: file {name!r} resolves outside {directory} (to {resolved})")
    if not resolved.exists():
        raise FileNotFoundError(f"{what}: file {path} is missing")
    if not resolved.is_file():
        raise error(f"{what}: {path} is not a regular file")
    return path
