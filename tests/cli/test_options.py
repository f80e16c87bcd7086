"""Options generated from typed configs (``lapo.cli.options``), on a toy config with known
fields, docstring, presets and types."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from lapo.cli.options import (
    add_config_options,
    config_from_args,
    device_name,
    field_docs,
    parse_assignment,
    parse_value,
    with_device,
)


@dataclass(frozen=True)
class Toy:
    """A config to generate options from.

    Attributes:
        name: what it is called.
        steps, batch: updates and their size
            (two fields, one text).
        mode: ``fast`` or ``slow``; rate: the step size.
        widths, scale: tuple of widths and an optional scale.
        flag: switch it on.
        path: where it goes.
    """

    name: str
    steps: int = 10
    batch: int = 4
    mode: Literal["fast", "slow"] = "fast"
    rate: float = 0.5
    widths: tuple[int, ...] = (8, 8)
    scale: float | None = None
    flag: bool = False
    path: Path = Path("x")


@dataclass(frozen=True)
class ToyChild(Toy):
    """A subclass.

    Attributes:
        steps: the child's own words.
        extra: one more field.
    """

    extra: int = 1


PRESETS = {"small": {"steps": 2}, "big": {"steps": 100, "flag": True}}


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_config_options(parser, Toy, PRESETS, **kwargs)
    return parser


def test_field_docs_reads_grouped_split_and_wrapped_entries() -> None:
    docs = field_docs(Toy)
    assert docs["name"] == "what it is called."
    assert docs["steps"] == docs["batch"] == "updates and their size (two fields, one text)."
    assert docs["mode"] == "fast or slow"  # ``x`` unquoted; "; rate: ..." is rate's entry
    assert docs["rate"] == "the step size."
    assert docs["widths"] == docs["scale"] == "tuple of widths and an optional scale."
    child = field_docs(ToyChild)
    assert child["steps"] == "the child's own words." and child["extra"] == "one more field."
    assert child["batch"] == docs["batch"]  # inherited from the base's docstring


@pytest.mark.parametrize(
    ("annotation", "text", "value"),
    [(int, "3", 3), (float, "1e-3", 1e-3), (bool, "no", False), (bool, "True", True),
     (Literal["a", "b"], "b", "b"), (tuple[int, ...], "1, 2,3", (1, 2, 3)),
     (float | None, "2", 2.0), (Path, "a/b", Path("a/b"))],
)  # fmt: skip
def test_parse_value_by_annotation(annotation, text, value) -> None:
    assert parse_value(annotation, text) == value


@pytest.mark.parametrize(
    ("annotation", "text", "message"),
    [(int, "1.5", "expected an integer, got '1.5'"), (float, "x", "expected a number"),
     (bool, "maybe", "expected true or false"), (Literal["a", "b"], "c", "one of a, b")],
)  # fmt: skip
def test_parse_value_errors_say_what_was_expected(annotation, text, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_value(annotation, text)


def test_every_field_gets_a_flag_with_type_default_none_and_docstring_help() -> None:
    parser = _parser()
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    assert set(actions) == {"help", *Toy.__dataclass_fields__}
    assert actions["name"].required and not actions["steps"].required
    assert all(a.default is None for d, a in actions.items() if d != "help")
    assert actions["mode"].choices == ("fast", "slow")
    assert isinstance(actions["flag"], argparse.BooleanOptionalAction)
    assert actions["rate"].help == "the step size (default: 0.5)"
    assert actions["steps"].help == (
        "updates and their size (two fields, one text) (default: the preset's: small 2, big 100)"
    )
    args = parser.parse_args(["--name", "n", "--widths", "4,2", "--no-flag", "--path", "p"])
    assert (args.widths, args.flag, args.path, args.steps) == ((4, 2), False, Path("p"), None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "n", "--mode", "medium"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "n", "--steps", "many"])


def test_exclusions_aliases_and_misnamed_fields() -> None:
    parser = _parser(exclude=("path",), aliases={"steps": "--updates"})
    assert "--path" not in parser.format_help()
    assert parser.parse_args(["--name", "n", "--updates", "7"]).steps == 7
    with pytest.raises(ValueError, match="Toy has no field nope"):
        _parser(exclude=("nope",))


def test_config_from_args_preset_then_fixed_then_given() -> None:
    parser = _parser()
    args = parser.parse_args(["--name", "n", "--rate", "0.1"])
    config = config_from_args(Toy, PRESETS, "big", args, rate=0.9, batch=2)
    assert config == Toy(name="n", steps=100, flag=True, batch=2, rate=0.1)
    assert config_from_args(Toy, None, None, args) == Toy(name="n", rate=0.1)


def test_parse_assignment_and_its_errors() -> None:
    targets = {"toy": Toy, "child": ToyChild}
    assert parse_assignment("toy.steps=5", targets) == ("toy", "steps", 5)
    assert parse_assignment("child.widths=1,2", targets) == ("child", "widths", (1, 2))
    with pytest.raises(ValueError, match="expects STAGE.FIELD=VALUE"):
        parse_assignment("toy.steps", targets)
    with pytest.raises(ValueError, match="unknown stage 'lam'; valid stages: toy, child"):
        parse_assignment("lam.steps=1", targets)
    with pytest.raises(ValueError, match=r"Toy has no field 'step'; valid fields: name, steps,"):
        parse_assignment("toy.step=1", targets)
    with pytest.raises(ValueError, match="toy.steps=x: expected an integer"):
        parse_assignment("toy.steps=x", targets)


def test_device_names_and_with_device() -> None:
    assert [device_name(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == [
        "cpu", "cuda", "cuda:1", "mps",
    ]  # fmt: skip
    for bad in ("gpu", "cuda:", "cuda:x", "CPU"):
        with pytest.raises(argparse.ArgumentTypeError, match="cpu, cuda, cuda:N or mps"):
            device_name(bad)

    def takes(x, device=None): ...

    def does_not(x): ...

    assert with_device(takes, "cuda:1") == {"device": "cuda:1"}
    assert with_device(takes, None) == {} == with_device(does_not, None)
    assert with_device(does_not, "cpu") == {}
    with pytest.raises(ValueError, match="does not take a device yet"):
        with_device(does_not, "cuda")
