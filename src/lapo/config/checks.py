"""Validation helpers of the config dataclasses: each raises ValueError naming the field,
what it must be and the value that came."""

from __future__ import annotations


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
