"""Nothing lost, nobody in: the guards every lapo output goes through.

- ``prepare_output``: the one place that decides whether an existing output may be replaced
  (``--overwrite``). It replaces only what lapo made (``lapo_made``: a lapo dataset, recognised by
  its ``manifest.json`` of format ``lapo-dataset``, or a lapo run directory, recognised by a
  ``checkpoint.json`` of format ``lapo-checkpoint`` or a ``pipeline.json``) or an empty directory;
  never a file, a symbolic link or a foreign directory, and never a path that holds an input of
  the command (``check_disjoint``).
- ``exclusive``: an exclusive lock per output (run directory or dataset) held for the life of the
  work, so that two lapo processes never write one output; a run directory is only ever new,
  empty or lapo's own (``check_run_output``), so lapo's files never mix with a user's. The lock
  is an ``flock`` on a lock file (``filelock.FileLock``, timeout 0: fail at once, never wait);
  the holder writes its pid to a side file so that the refusal can name it. The lock is
  released by the kernel when the process dies, however it dies, so a crashed run never blocks
  the next one. Lock files stay (empty, they hold no state); the pid file is removed on release.
- ``confined_file`` (``lapo.paths``): a file named by metadata must lie inside its directory.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

#: Lock file inside a run directory (and its pid side file, ``.lapo.lock.pid``).
RUN_LOCK = ".lapo.lock"


class InUseError(RuntimeError):
    """Another lapo process holds the lock of an output; the message names its pid."""


def lapo_made(path: str | os.PathLike) -> str | None:
    """What lapo made at ``path``: ``"lapo dataset"``, ``"lapo run directory"``, ``"lapo
    aggregate"`` or None.

    A lapo dataset is a directory whose ``manifest.json`` has format ``lapo-dataset``; a lapo run
    directory one whose ``checkpoint.json`` has format ``lapo-checkpoint`` or that holds a
    ``pipeline.json`` (``lapo run``); a lapo aggregate one whose ``aggregate.json`` is an object
    with ``runs`` and ``aggregate`` (``lapo aggregate``). A symbolic link is never lapo's.
    """
    # Imported here, not at the top: lapo.data's writer uses this module's guards, and importing
    # lapo.data.format at the top would load the lapo.data package (and its writer) first.
    from lapo.checkpoint import FORMAT_NAME as CHECKPOINT_FORMAT
    from lapo.data.format import FORMAT_NAME as DATASET_FORMAT
    from lapo.data.format import MANIFEST

    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return None

    def read(name: str) -> dict:
        try:
            doc = json.loads((path / name).read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    if read(MANIFEST).get("format") == DATASET_FORMAT:
        return "lapo dataset"
    if read("checkpoint.json").get("format") == CHECKPOINT_FORMAT:
        return "lapo run directory"
    if (path / "pipeline.json").is_file():
        return "lapo run directory"
    if {"runs", "aggregate"} <= set(read("aggregate.json")):
        return "lapo aggregate"
    return None


def check_disjoint(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output that is an input, lies inside one, or contains one.

    Paths are compared resolved (symbolic links followed; they need not exist). None entries
    of ``inputs`` are skipped.

    Raises:
        ValueError: naming the output and the input.
    """
    resolved = Path(out).resolve()
    for source in inputs:
        if source is None:
            continue
        given = Path(source).resolve()
        if given == resolved:
            raise ValueError(f"the output {out} is the input {source}; choose another --out")
        if given in resolved.parents:
            raise ValueError(
                f"the output {out} lies inside the input {source}; choose an --out outside it"
            )
        if resolved in given.parents:
            raise ValueError(
                f"the output {out} contains the input {source}: lapo never writes over (or with "
                "--overwrite deletes) its own input; choose another --out"
            )


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse to replace ``path`` unless lapo made it (see ``lapo_made``) or it is an empty
    directory; a missing path is fine.

    Raises:
        FileExistsError: ``path`` is a file, a symbolic link or a foreign, non-empty directory
            (the message says which, and lists a few of its entries).
    """
    path = Path(path)
    if path.is_symlink():
        raise FileExistsError(
            f"{path} is a symbolic link; --overwrite replaces only a lapo dataset or run "
            "directory: remove it yourself or choose another --out"
        )
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(
            f"{path} is a file, not a lapo dataset or run directory; --overwrite never replaces "
            "it: remove it yourself or choose another --out"
        )
    if lapo_made(path) is not None:
        return
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        shown = ", ".join(entries[:3]) + more
        raise FileExistsError(
            f"{path} is not a lapo dataset or run directory (it holds {shown}); --overwrite "
            "replaces only what lapo made: remove it yourself or choose another --out"
        )


def check_run_output(path: str | os.PathLike) -> None:
    """Refuse to write a run directory into a directory that holds something else.

    A run directory may be written into a new path, an empty directory, or one that lapo made
    as a run directory or an aggregate's output: it holds the run lock (``.lapo.lock``, taken
    before anything is written; a fresh clone of a repository that committed the outputs has
    none) or a marker (``lapo_made``). Anything else, a user's folder or a lapo
    dataset, is refused: a run written among foreign files would mark their folder as lapo's,
    and a later ``--overwrite`` would then delete them with it.

    Raises:
        FileExistsError: ``path`` is a file, a lapo dataset or a foreign, non-empty directory
            (the message lists a few of its entries).
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(
            f"{path} is a file; a run is written into a new or empty directory: choose another "
            "--out"
        )
    made = lapo_made(path)
    if (path / RUN_LOCK).exists() or made in ("lapo run directory", "lapo aggregate"):
        return
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return
    more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
    what = "a lapo dataset" if made else "not a lapo run directory"
    raise FileExistsError(
        f"{path} is {what} (it holds {', '.join(entries[:3])}{more}); a run is written into a "
        "new or empty directory or continues its own: choose another --out"
    )


def prepare_output(
    path: str | os.PathLike,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Check an output path before any work: the one function that honours ``overwrite``.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: ``path`` is, lies inside or contains one of ``inputs`` (``check_disjoint``).
        FileExistsError: ``path`` exists and ``overwrite`` is False; or ``overwrite`` is True but
            lapo did not make what is there (``check_replaceable``).
    """
    path = Path(path)
    check_disjoint(path, inputs)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another output path or pass overwrite "
                "(--overwrite) to replace it"
            )
        check_replaceable(path)
    return path


# ---------------------------------------------------------------------------- locks
_HELD: dict[Path, int] = {}  # lock files this process holds -> nesting depth


def _lock_file(target: Path, inside: bool) -> Path:
    if inside:
        return target / RUN_LOCK
    target = target.resolve()
    return target.with_name(f".{target.name}.lapo.lock")


def _holder(pid_file: Path) -> str:
    try:
        return f"pid {int(pid_file.read_text().strip())}"
    except (OSError, ValueError):
        return "pid unknown"


@contextmanager
def exclusive(target: str | os.PathLike, *, inside: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of the output ``target`` for the ``with`` block.

    Args:
        target: a run directory (``inside``: the lock is ``<target>/.lapo.lock``; the directory
            is created) or a dataset path (not ``inside``: the dataset is replaced as a whole, so
            the lock is the sibling ``.<name>.lapo.lock``).

    Re-entrant within a process (a ``lapo run`` holds its run directory while its stages take
    their own). A run directory this call created is removed again on exit when the block
    wrote nothing into it (a command that failed early leaves no folder holding only the
    lock). Under ``torchrun`` only rank 0 (``RANK`` unset or 0) takes it.

    Raises:
        InUseError: another process holds it; the message names its pid.
        FileExistsError: ``inside`` and ``target`` holds something other than a lapo run
            (``check_run_output``), checked before anything is created.
    """
    if int(os.environ.get("RANK", "0") or 0) != 0:
        yield
        return
    target = Path(target)
    lock_file = _lock_file(target, inside)
    key = lock_file.resolve()
    if inside and key not in _HELD:
        check_run_output(target)
    created = inside and key not in _HELD and not target.exists()
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    pid_file = lock_file.with_name(lock_file.name + ".pid")
    lock = FileLock(lock_file, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise InUseError(
            f"{target} is in use by another lapo process ({_holder(pid_file)}); wait for it "
            "or choose another --out"
        ) from None
    try:
        tmp = pid_file.with_name(f"{pid_file.name}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, pid_file)
        _HELD[key] = 1
        yield
    finally:
        _HELD.pop(key, None)
        pid_file.unlink(missing_ok=True)
        # A run that failed before writing anything leaves no folder holding only the lock.
        empty = created and target.is_dir() and [p.name for p in target.iterdir()] == [RUN_LOCK]
        if empty:
            try:
                lock_file.unlink(missing_ok=True)
            except OSError:  # e.g. a held lock file on Windows: leave the folder as it is
                empty = False
        lock.release()
        if empty:
            with suppress(OSError):  # another process may have begun writing into it
                target.rmdir()


def holds_lock(
    target: Callable[[dict[str, Any]], str | os.PathLike],
    *,
    inputs: Callable[[dict[str, Any]], Iterable[str | os.PathLike | None]] | None = None,
    inside: bool = True,
    before: Callable[[dict[str, Any]], None] | None = None,
) -> Callable:
    """Decorator: call the function while holding ``exclusive(target(arguments))``.

    ``target`` maps the call's bound arguments (by parameter name, defaults applied) to the
    output path to lock; ``inputs``, if given, maps them to the input paths, and the output is
    checked against them (``check_disjoint``, ValueError) before the lock is taken; ``before``,
    if given, is called with the bound arguments (the function's own checks of its inputs: it
    raises to refuse): before the lock when the output directory does not exist yet, so that a
    refused call leaves nothing behind, not even the lock's directory; under the lock when it
    exists, so that an output in use is refused as such whatever the inputs.
    """

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            out = target(bound.arguments)
            if inputs is not None:
                check_disjoint(out, inputs(bound.arguments))
            fresh = not _lock_file(Path(out), inside).parent.exists()
            if before is not None and fresh:
                before(bound.arguments)
            with exclusive(out, inside=inside):
                if before is not None and not fresh:
                    before(bound.arguments)
                return fn(*args, **kwargs)

        return locked

    return decorate
