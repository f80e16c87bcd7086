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


def _fits(value: object, annotation: object) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin is tuple:  # JSON (a config read back from a checkpoint) gives lists
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_fits, value, args))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:  # numpy integers too; a bool is not a count
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation in (str, Path):  # paths are given either way
        return isinstance(value, str | os.PathLike)
    return True  # an annotation this check does not know: the config's own checks decide


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
    sentence instead of a TypeError inside a comparison or a float step count."""
    hints = _field_types(type(config))
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        if not _fits(value, hints[field.name]):
            raise ValueError(
                f"{type(config).__name__}.{field.name} must be {_describe(hints[field.name])}, "
                f"got {value!r}"
            )
