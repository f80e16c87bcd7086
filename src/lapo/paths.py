"""File-system helpers below every other lapo module (they import nothing from lapo).

- ``confined_file``: paths taken from metadata (a dataset manifest's file list, a checkpoint's
  tensor file name) confined to their directory and regular files, so that untrusted metadata can
  never make lapo read outside it (``../../etc/hostname``) or hang on a device (``/dev/zero``).
- ``atomic_file``: the one way lapo writes a file that a later stage trusts (temporary name
  unique to the writer, flush, fsync, rename, fsync of the directory), so that a crash leaves
  either the old file or the new one, never a torn one.
- ``pid_alive``, ``fsync_dir``: for clean-ups of killed writers and durable renames.
- ``write_json_atomic``: ``atomic_file`` for a JSON document.
- ``sha256_file``: the digest that checkpoints and datasets record for their files.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on POSIX; elsewhere assume it does)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make renames in ``directory`` durable (POSIX only; a no-op elsewhere)."""
    if os.name == "posix":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit of the ``with`` block
    flush and fsync it, rename it to ``path`` (atomic) and fsync the directory. On an exception
    the temporary file is removed and ``path`` is untouched.

    The temporary name, ``<name>.tmp-<pid>-<hex>``, is unique to the writer, so two writers never
    write into one file; the last rename wins whole.

    Args:
        mode: ``"wb"`` (bytes) or ``"w"`` (text).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


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


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, obj: Any, indent: int = 2, default: Any = None) -> None:
    """Write ``obj`` as JSON to ``path`` atomically and durably (``atomic_file``); ``indent`` and
    ``default`` as in ``json.dump``."""
    with atomic_file(path, "w") as fh:
        json.dump(obj, fh, indent=indent, default=default)
        fh.write("\n")
