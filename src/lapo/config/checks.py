"""Validation helpers of the config dataclasses: each raises ValueError naming the field,
what it must be and the value that came."""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import types
import typing
from pathlib import Path


def is_number(value: object) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_ints(config: object, minimum: int, *names: str) -> None:
    """Raise ValueError unless every field ``names`` of ``config`` is an integer >= ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_reals(
    config: object, low: float, high: float = float("inf"), *names: str, open_low: bool = False
) -> None:
    """Raise ValueError unless every field ``names`` is a finite number in ``[low, high]``
    (``(low, high]`` when ``open_low``)."""
    for name in names:
        value = getattr(config, name)
        fits = is_number(value) and (low < value if open_low else low <= value) and value <= high
        if not (fits and value < float("inf")):
            bracket = "(" if open_low else "["
            bound = "" if high == float("inf") else f", {high}]"
            wanted = f"in {bracket}{low}{bound}" if bound else f"{'>' if open_low else '>='} {low}"
            raise ValueError(f"{name} must be a finite number {wanted}, got {value!r}")


def check_seed(config: object) -> None:
    """Raise ValueError unless ``config.seed`` is an integer (not a bool) in ``[0, 2**31)``."""
    seed = config.seed  # type: ignore[attr-defined]
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**31):
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")


def check_temperature(temperature: float) -> None:
    """Raises ValueError unless ``temperature`` is a finite number > 0."""
    if not (isinstance(temperature, int | float) and 0 < temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


@functools.cache
def _field_types(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


class _Mismatch(Exception):
    """A value that is not of its field's annotated type."""


def _coerce(value: object, annotation: object) -> object:
    """``value`` as its field stores it (numpy scalars as Python numbers, any iterable of a tuple
    field as a tuple), or ``_Mismatch`` when it is not of type ``annotation``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is typing.Literal:
        for arg in args:
            if isinstance(value, type(arg)) and value == arg:
                return arg
        raise _Mismatch
    if origin is tuple:  # JSON (a config read back from a checkpoint) gives lists
        if isinstance(value, str | bytes | os.PathLike):
            raise _Mismatch
        try:
            items = tuple(value)  # type: ignore[call-overload]
        except TypeError:
            raise _Mismatch from None
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in items)
        if len(items) != len(args):
            raise _Mismatch
        return tuple(map(_coerce, items, args))
    if annotation is bool:
        numpy_bool = getattr(getattr(value, "dtype", None), "kind", "") == "b"  # numpy bool_
        if isinstance(value, bool) or (numpy_bool and getattr(value, "ndim", 1) == 0):
            return bool(value)  # type: ignore[arg-type]
        raise _Mismatch
    if annotation is int:  # numpy integers too, stored as int; a bool is not a count
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch
    if annotation is float:  # stored as float: checkpoints write the config as JSON
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return value if isinstance(value, int) else float(value)
        raise _Mismatch
    if annotation in (str, Path):  # paths are given either way
        if isinstance(value, str | os.PathLike):
            return value
        raise _Mismatch
    return value  # an annotation this check does not know: the config's own checks decide


def _describe(annotation: object) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a tuple of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             Path: "a path", type(None): "None"}  # fmt: skip
    return names.get(annotation, str(annotation))


def check_types(config: object) -> None:
    """Raise ValueError naming the first field of the dataclass ``config`` whose value is not of
    its annotated type (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``tuple``, ``X |
    None``), before the range checks compare it: ``steps="500"`` or ``steps=1.5`` fail with a
    sentence instead of a TypeError inside a comparison or a float step count. Values that fit
    are stored as plain Python values: numpy scalars as ``int``/``float``/``bool`` (checkpoints
    write configs as JSON) and any iterable given for a tuple field (a list read back from
    JSON, a generator, an array) as a tuple."""
    hints = _field_types(type(config))
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        try:
            stored = _coerce(value, hints[field.name])
        except _Mismatch:
            raise ValueError(
                f"{type(config).__name__}.{field.name} must be {_describe(hints[field.name])}, "
                f"got {value!r}"
            ) from None
        object.__setattr__(config, field.name, stored)  # frozen dataclasses too
