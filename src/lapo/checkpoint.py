"""Atomic, pickle-free training checkpoints for every lapo stage (format version 1).

A checkpoint at path ``P`` (e.g. ``runs/x/checkpoint``) is two files in ``P``'s directory::

    P.json                  the commit marker: {"format": "lapo-checkpoint", "version": 1,
                            "tensors_file": "P.<sha8>.safetensors", "tensors_sha256": <hex>,
                            "modules": [names], "optimizers": {name: {"type", "param_groups",
                            "state": {index: {non-tensor values}}}}, "schedulers": {name:
                            {"type", "state"}}, "tensors": [extra tensor names], "meta": {...}}
    P.<sha8>.safetensors    every tensor, keyed "module/{name}/{param}",
                            "optimizer/{name}/state/{param_index}/{key}" and "tensor/{key}"

Saving writes the tensor file and ``P.json`` under temporary names unique to the writer
(``P.safetensors.tmp-<pid>-<hex>``, ``P.json.tmp-<pid>-<hex>``) and fsyncs them; then, holding the
short commit lock ``.P.lock`` (``filelock``), it renames the tensor file to its content-addressed
name (the first 8 hex digits of its sha256), renames ``P.json`` into place last (the commit) and
deletes stale files: tensor files the committed ``P.json`` does not name, and temporary files of
writers that are no longer alive. A crash at any point leaves either the previous checkpoint or the
new one loadable, never a mix: ``P.json`` names its tensor file and stores its full sha256, which
every load verifies. Two processes saving to one ``P`` at once both succeed and leave the one that
committed last, loadable. The tensor file ``P.json`` names must be a regular file in ``P``'s
directory. Loading reads only JSON and safetensors (``safetensors.torch.load_file``): nothing is
unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file
from torch.optim.lr_scheduler import LRScheduler

from lapo.paths import confined_file, fsync_dir, pid_alive, sha256_file

#: Base name of the checkpoint inside every run directory (``checkpoint.json`` + tensors).
CHECKPOINT = "checkpoint"
FORMAT_NAME = "lapo-checkpoint"
FORMAT_VERSION = 1
_COMMIT_LOCK_S = 600  # seconds a save waits for the commit lock (a commit takes milliseconds)


class CheckpointError(ValueError):
    """A checkpoint is malformed, inconsistent, or does not fit the objects it is loaded into.

    The message names the offending file and says what was expected and what was found.
    """


@dataclass(frozen=True)
class Checkpoint:
    """What `load_checkpoint` returns besides the states it loads into the given objects.

    Attributes:
        meta: the ``meta`` given to `save_checkpoint` (tuples come back as lists).
        tensors: the extra ``tensors`` given to `save_checkpoint`, on ``map_location``.
        path: the checkpoint path ``P`` (without ``.json``).
    """

    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    path: Path


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A run directory or a checkpoint path (with or without ``.json``) -> the checkpoint path."""
    path = Path(path)
    if path.is_dir():
        return path / CHECKPOINT
    return path.with_suffix("") if path.suffix == ".json" else path


def _json_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def _check_json(obj: Any, where: str) -> None:
    """Raise TypeError naming the key path ``where`` unless ``obj`` is plain JSON data.

    Plain: None, bool, int, float, str, and lists, tuples (loaded back as lists) and str-keyed
    dicts of these. Int dict keys are refused: JSON would silently turn them into strings.
    """
    if obj is None or isinstance(obj, bool | int | float | str):
        return
    if isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            _check_json(item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has key {key!r} ({type(key).__name__}); JSON needs str")
            _check_json(value, f"{where}[{key!r}]")
    else:
        raise TypeError(f"{where} is a {type(obj).__name__}, which is not JSON-serializable")


def _flatten_optimizer(name: str, optimizer: torch.optim.Optimizer, flat: dict) -> dict:
    """Move the tensors of ``optimizer.state_dict()`` into ``flat``; return the JSON rest."""
    state_dict = optimizer.state_dict()
    state: dict[str, dict] = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                flat[f"optimizer/{name}/state/{index}/{key}"] = value
            else:
                _check_json(value, f"optimizers[{name!r}].state[{index}][{key!r}]")
                state.setdefault(str(index), {})[key] = value
    groups = state_dict["param_groups"]  # hyper-parameters, and parameter indices in "params"
    _check_json(groups, f"optimizers[{name!r}].param_groups")
    return {"type": type(optimizer).__name__, "param_groups": groups, "state": state}


def _storable(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors owning their whole storage, as safetensors requires (tied weights
    and views are cloned)."""
    out, seen = {}, set()
    for key, tensor in flat.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage()
        if (
            not tensor.is_contiguous()
            or storage.nbytes() != tensor.nbytes
            or storage.data_ptr() in seen
        ):
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(storage.data_ptr())
        out[key] = tensor
    return out


def _collect(modules, optimizers, schedulers, tensors, meta) -> tuple[dict, dict]:
    """Flatten every state into (tensors for the safetensors file, JSON document); write nothing."""
    for kind, named in (("module", modules), ("optimizer", optimizers), ("scheduler", schedulers)):
        for name in named:
            if not name or "/" in name:
                raise ValueError(f"{kind} name {name!r} must be non-empty and contain no '/'")
    _check_json(meta, "meta")
    flat: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"modules[{name!r}] state {key!r} is a {type(value).__name__}")
            flat[f"module/{name}/{key}"] = value
    opts = {name: _flatten_optimizer(name, opt, flat) for name, opt in optimizers.items()}
    scheds = {}
    for name, scheduler in schedulers.items():
        scheds[name] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
        _check_json(scheds[name]["state"], f"schedulers[{name!r}]")
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"tensors[{key!r}] is a {type(value).__name__}, not a tensor")
        flat[f"tensor/{key}"] = value
    doc = {"modules": list(modules), "optimizers": opts, "schedulers": scheds}
    return _storable(flat), {**doc, "tensors": list(tensors), "meta": meta}


def save_checkpoint(
    path: str | os.PathLike,
    *,
    modules: Mapping[str, torch.nn.Module] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    schedulers: Mapping[str, LRScheduler] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Atomically write a checkpoint at ``path`` (files ``path.json`` and
    ``path.<sha8>.safetensors``, see the module docstring), replacing any previous one.

    Stores each module's ``state_dict()`` (parameters and persistent buffers), each optimizer's
    ``state_dict()`` (state tensors in the tensor file, hyper-parameters and ``param_groups`` in the
    JSON), each scheduler's ``state_dict()`` (JSON), the extra ``tensors`` (e.g. from
    `lapo.rng.rng_state`) and ``meta`` (config, step, metrics: plain JSON data). Names may not
    contain ``/``.
    Parent directories are created.

    Raises:
        TypeError: ``meta``, a scheduler state or a non-tensor optimizer value is not plain JSON
            data (the message names the key path), or a module state holds a non-tensor. Raised
            before anything is written.
        ValueError: a name is empty or contains ``/``.
        filelock.Timeout: another writer held the commit lock for over 10 minutes.
    """
    flat, doc = _collect(
        modules or {}, optimizers or {}, schedulers or {}, tensors or {}, dict(meta or {})
    )
    path = Path(path)
    directory, name = path.parent, path.name
    directory.mkdir(parents=True, exist_ok=True)
    # Temporary names are unique per writer (pid and a random part), so concurrent writers
    # never write into one another's files.
    unique = f"tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp_tensors = directory / f"{name}.safetensors.{unique}"
    tmp_json = directory / f"{name}.json.{unique}"
    try:
        save_file(flat, str(tmp_tensors))
        # safetensors creates its file 0600; give it the mode open() gives (the process umask)
        tmp_json.touch()
        os.chmod(tmp_tensors, stat.S_IMODE(tmp_json.stat().st_mode))
        sha = sha256_file(tmp_tensors)
        with open(tmp_tensors, "rb") as fh:
            os.fsync(fh.fileno())
        tensors_file = f"{name}.{sha[:8]}.safetensors"
        head = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tensors_file": tensors_file}
        with open(tmp_json, "w") as fh:
            json.dump({**head, "tensors_sha256": sha, **doc}, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        # Placing the tensor file, committing the JSON and deleting stale files happen under a
        # short lock, so that one writer's clean-up never deletes the tensor file another writer
        # has placed but not yet committed.
        with FileLock(directory / f".{name}.lock", timeout=_COMMIT_LOCK_S, thread_local=False):
            os.replace(tmp_tensors, directory / tensors_file)
            fsync_dir(directory)
            os.replace(tmp_json, _json_path(path))  # the commit point
            fsync_dir(directory)
            _remove_stale(directory, name)
    finally:
        tmp_tensors.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)


def _remove_stale(directory: Path, name: str) -> None:
    """Delete the checkpoint ``name``'s files that nothing can need (call under the commit lock).

    - ``name.<sha8>.safetensors`` not named by the committed ``name.json``: older tensor files,
      and orphans of saves interrupted after placing theirs. No writer is between placing its
      tensor file and committing (both happen under the lock), so none of these is in flight.
    - temporary files ``name.{safetensors,json}.tmp-<pid>-<hex>`` whose writer ``pid`` is dead
      (a live writer's are its own business; a reused pid only delays the clean-up).
    """
    try:
        committed = json.loads(_json_path(directory / name).read_text()).get("tensors_file")
    except (OSError, ValueError, AttributeError):
        return  # nothing committed that we can read: delete nothing
    stale = re.compile(re.escape(name) + r"\.[0-9a-f]{8}\.safetensors")
    temporary = re.compile(re.escape(name) + r"\.(?:safetensors|json)\.tmp-(\d+)-[0-9a-f]+")
    for file in directory.iterdir():
        if stale.fullmatch(file.name) and file.name != committed:
            file.unlink(missing_ok=True)
        elif (match := temporary.fullmatch(file.name)) and not pid_alive(int(match[1])):
            file.unlink(missing_ok=True)


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 of the committed ``P.json`` of the checkpoint at ``path`` (a run directory or a
    checkpoint path): the checkpoint's content identity, since ``P.json`` records the full sha256
    of its tensor file besides everything else it holds.

    Raises:
        FileNotFoundError: no checkpoint there.
    """
    json_path = _json_path(checkpoint_path(path))
    try:
        return hashlib.sha256(json_path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise _missing(json_path) from None


def _missing(json_path: Path) -> FileNotFoundError:
    """The error for a checkpoint whose ``P.json`` is not there, saying what is there instead:
    nothing, a file, or a folder and a few of its entries (a dataset's ``manifest.json``, a
    ``lapo run`` directory's ``pipeline.json`` and stage folders tell the user what they gave)."""
    path = json_path.with_name(json_path.name.removesuffix(".json"))
    if path.is_dir():
        return FileNotFoundError(f"{path} is a directory, not a checkpoint (no {json_path.name})")
    if path.exists():
        return FileNotFoundError(f"{path} is a file, not a checkpoint (no {json_path.name})")
    folder = path.parent
    if path.name != CHECKPOINT or not folder.is_dir():
        return FileNotFoundError(f"{path}: no such run directory or checkpoint")
    entries = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
    return FileNotFoundError(
        f"{folder} holds no checkpoint (no {json_path.name}; "
        f"{'it holds ' + shown if entries else 'it is empty'}); expected a run directory or "
        "checkpoint"
    )


def checkpoint_exists(path: str | os.PathLike) -> bool:
    """True if a checkpoint was committed at ``path`` (its ``path.json`` marker exists)."""
    return _json_path(path).is_file()


def _read_doc(path: str | os.PathLike) -> dict:
    """The JSON document of the checkpoint at ``path``, with its format and version checked."""
    json_path = _json_path(path)
    try:
        doc = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise _missing(json_path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{json_path}: not valid JSON ({exc})") from None
    found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
    if found != FORMAT_NAME:
        raise CheckpointError(f"{json_path}: format is {found!r}, expected {FORMAT_NAME!r}")
    if doc.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path}: version {doc.get('version')!r} is not supported "
            f"(this lapo reads version {FORMAT_VERSION})"
        )
    _check_doc(doc, str(json_path))
    return doc


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_doc(doc: dict, where: str) -> None:
    """Refuse a checkpoint document whose entries have the wrong JSON type (a tampered or
    truncated ``P.json``) before anything uses them.

    Raises:
        CheckpointError: naming the entry and what it must be.
    """

    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{where}: {key!r} must be {expected}; the file was altered")

    sha = doc.get("tensors_sha256")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise bad("tensors_sha256", "64 hex digits")
    if not isinstance(doc.get("tensors_file"), str):
        raise bad("tensors_file", "a file name")
    for key in ("modules", "tensors"):
        if not _is_str_list(doc.get(key)):
            raise bad(key, "a list of names")
    if not isinstance(doc.get("meta"), dict):
        raise bad("meta", "an object")
    optimizers = doc.get("optimizers")
    if not isinstance(optimizers, dict):
        raise bad("optimizers", "an object")
    for name, opt in optimizers.items():
        groups = opt.get("param_groups") if isinstance(opt, dict) else None
        state = opt.get("state") if isinstance(opt, dict) else None
        if not (
            isinstance(opt, dict)
            and isinstance(opt.get("type"), str)
            and isinstance(groups, list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
            and isinstance(state, dict)
            and all(k.isdigit() and isinstance(v, dict) for k, v in state.items())
        ):
            raise bad(f"optimizers[{name!r}]", '{"type", "param_groups", "state"} as saved')
    schedulers = doc.get("schedulers")
    if not isinstance(schedulers, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("type"), str) and isinstance(v.get("state"), dict)
        for v in schedulers.values()
    ):
        raise bad("schedulers", 'an object of {"type", "state"} entries')


@contextmanager
def meta_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a lookup in a checkpoint's ``meta`` that fails because the metadata has another
    shape than lapo wrote (a missing key, a wrong type, a value a config refuses) into one
    CheckpointError.

    Raises:
        CheckpointError: naming ``path.json`` and the failed lookup.
    """
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise CheckpointError(
            f"{_json_path(checkpoint_path(path))}: its metadata is not what lapo wrote "
            f"({type(exc).__name__}: {exc}); the file was altered or comes from another version"
        ) from None


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` of the checkpoint at ``path``, reading only its JSON (cheap: no tensors).

    Raises:
        FileNotFoundError: ``path.json`` is missing.
        CheckpointError: it is not a version-1 lapo checkpoint.
    """
    return _read_doc(path)["meta"]


def _read_tensors(path: Path, map_location: str | torch.device) -> tuple[dict, dict]:
    """The JSON document and all tensors of a checkpoint, the pair verified by sha256."""
    doc = _read_doc(path)
    where = str(_json_path(path))
    try:
        tensor_path = confined_file(path.parent, doc.get("tensors_file"), where, CheckpointError)
    except FileNotFoundError:  # a concurrent save may have replaced it since we read path.json:
        doc = _read_doc(path)  # read that again, once
        try:
            tensor_path = confined_file(path.parent, doc.get("tensors_file"), where,
                                        CheckpointError)  # fmt: skip
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{where}: tensor file {path.parent / doc['tensors_file']} is missing"
            ) from None
    sha = sha256_file(tensor_path)
    if sha != doc["tensors_sha256"]:
        raise CheckpointError(
            f"{tensor_path}: sha256 {sha[:16]}... differs from {doc['tensors_sha256'][:16]}... "
            f"recorded in {_json_path(path)}: the tensor file does not belong to this checkpoint"
        )
    try:
        flat = load_file(tensor_path, device=str(map_location))
    except Exception as exc:  # safetensors' SafetensorError (bad header), or torch's
        raise CheckpointError(f"{tensor_path}: not a readable safetensors file ({exc})") from None
    missing = [key for key in (f"tensor/{name}" for name in doc["tensors"]) if key not in flat]
    if missing:
        raise CheckpointError(f"{tensor_path}: lacks the tensors {missing[:3]} {where} lists")
    return doc, flat


def _module_state(where: str, name: str, module: torch.nn.Module, flat: dict, strict: bool):
    """The checkpoint's state dict for ``module``; CheckpointError listing all keys that differ."""
    prefix = f"module/{name}/"
    saved = {key[len(prefix) :]: value for key, value in flat.items() if key.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(expected.keys() - saved.keys())
    unexpected = sorted(saved.keys() - expected.keys())
    shapes = [
        f"{key}: checkpoint {tuple(saved[key].shape)}, model {tuple(expected[key].shape)}"
        for key in expected
        if key in saved and saved[key].shape != expected[key].shape
    ]
    if shapes or (strict and (missing or unexpected)):
        lines = [f"{where}: module {name!r} does not match the checkpoint's architecture"]
        if missing:
            lines.append(f"  missing from the checkpoint: {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected in the checkpoint: {', '.join(unexpected)}")
        if shapes:
            lines += ["  shape mismatch (name: checkpoint shape, model shape):"]
            lines += [f"    {line}" for line in shapes]
        raise CheckpointError("\n".join(lines))
    return saved


def _optimizer_state(where: str, name: str, optimizer, saved: dict, flat: dict) -> dict:
    """Rebuild ``optimizer``'s state dict from the JSON part ``saved`` and the tensors ``flat``."""
    sizes = [len(group["params"]) for group in saved["param_groups"]]
    current = [len(group["params"]) for group in optimizer.param_groups]
    if saved["type"] != type(optimizer).__name__ or sizes != current:
        raise CheckpointError(
            f"{where}: optimizer {name!r} is a {saved['type']} with parameter groups of sizes "
            f"{sizes} in the checkpoint, but a {type(optimizer).__name__} with {current} here"
        )
    state = {int(index): dict(values) for index, values in saved["state"].items()}
    prefix = f"optimizer/{name}/state/"
    for key, value in flat.items():
        if key.startswith(prefix):
            index, _, field = key[len(prefix) :].partition("/")
            state.setdefault(int(index), {})[field] = value
    groups = [  # JSON turned tuples such as Adam's betas into lists
        {k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in group.items()}
        for group, now in zip(saved["param_groups"], optimizer.param_groups, strict=True)
    ]
    return {"state": state, "param_groups": groups}


def load_checkpoint(
    path: str | os.PathLike,
    *,
    modules: Mapping[str, torch.nn.Module] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    schedulers: Mapping[str, LRScheduler] | None = None,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Load the checkpoint at ``path`` into the given modules, optimizers and schedulers.

    Everything is checked before any state is loaded, so on error the objects are unchanged.
    ``strict=False`` tolerates missing and unexpected module keys, never shape mismatches.
    Tensors are read to ``map_location`` (then copied into the modules' own devices).

    Returns:
        `Checkpoint` with the ``meta`` and extra ``tensors`` that were saved.

    Raises:
        FileNotFoundError: ``path.json`` or the tensor file it names is missing.
        CheckpointError: the tensor file ``path.json`` names lies outside its directory or is
            not a regular file; the tensor file's sha256 differs from the one in
            ``path.json``; wrong format or version; a name not in the checkpoint; a module whose
            keys or shapes differ (all missing, unexpected and shape-mismatched keys are
            listed); an optimizer or scheduler of another type or with other parameter group
            sizes.
    """
    path = Path(path)
    modules, optimizers, schedulers = modules or {}, optimizers or {}, schedulers or {}
    doc, flat = _read_tensors(path, map_location)
    where = str(_json_path(path))
    for kind, given in (("module", modules), ("optimizer", optimizers), ("scheduler", schedulers)):
        saved = doc[f"{kind}s"]
        if absent := [name for name in given if name not in saved]:
            raise CheckpointError(f"{where}: no {kind} named {absent}; it has {sorted(saved)}")
    for name, scheduler in schedulers.items():
        if (saved := doc["schedulers"][name]["type"]) != (here := type(scheduler).__name__):
            raise CheckpointError(f"{where}: scheduler {name!r} is a {saved}, not a {here}")
    states = {name: _module_state(where, name, m, flat, strict) for name, m in modules.items()}
    opt_states = {
        name: _optimizer_state(where, name, opt, doc["optimizers"][name], flat)
        for name, opt in optimizers.items()
    }
    for name, module in modules.items():
        module.load_state_dict(states[name], strict=strict)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(opt_states[name])
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(doc["schedulers"][name]["state"])
    extra = {key: flat[f"tensor/{key}"] for key in doc["tensors"]}
    return Checkpoint(meta=doc["meta"], tensors=extra, path=path)
