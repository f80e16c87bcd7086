"""Command-line options generated from the typed config dataclasses (``lapo.config``,
``lapo.pipeline.run_config.RunConfig``): one definition per option.

Every field of a config becomes ``--field-name`` with its type from the annotation (bool:
``--x/--no-x``; ``Literal``: its choices; ``tuple[int, ...]``: comma-separated), its help from
the ``Attributes:`` section of the config's docstring and default None, meaning "the preset's
value" (or the field's default where the config has no presets). Adding a field adds its flag.

Hand-written over argparse rather than tyro: the ``lapo`` command is an argparse subcommand tree
whose commands mix config fields with plain options (``--data``, ``--resume``, ``--time-budget``),
keep old flag spellings as aliases and must not import torch to print ``--help``; tyro builds its
own parser from a whole signature and would own that tree instead of adding options to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
DEVICE_PATTERN = re.compile(r"(cpu|mps|cuda(:\d+)?)")


def field_docs(config_cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` sections of ``config_cls`` and its bases
    (a subclass's entry wins). An entry may describe several fields (``a, b: text``: both get
    ``text``) or several in turn (``a: text; b: other``). Fields without an entry map to ""."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        docs.update(_attributes(klass.__dict__.get("__doc__") or "", names))
    return {name: docs.get(name, "") for name in sorted(names)}


def _attributes(doc: str, names: set[str]) -> dict[str, str]:
    lines = inspect.cleandoc(doc).splitlines()
    if "Attributes:" not in lines:
        return {}
    entries: list[str] = []
    indent = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:  # the next section
            break
        indent = depth if indent is None else indent
        if depth == indent:
            entries.append(line.strip())
        elif entries:
            entries[-1] += " " + line.strip()
    docs: dict[str, str] = {}
    for entry in entries:
        current: list[str] = []
        for part in entry.split("; "):
            head, sep, text = part.partition(": ")
            fields = [n.strip() for n in head.split(",")]
            if sep and all(n in names for n in fields):
                current = fields
                for n in fields:
                    docs[n] = text
            elif current:
                for n in current:
                    docs[n] += "; " + part
    return {k: v.replace("``", "").strip() for k, v in docs.items()}


def _plain(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_types(config_cls: type) -> dict[str, Any]:
    """``{field: annotation}`` with ``X | None`` reduced to ``X``."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: _plain(hints[f.name]) for f in dataclasses.fields(config_cls)}


def parse_value(annotation: Any, text: str) -> Any:
    """``text`` converted to ``annotation`` (int, float, str, Path, bool, a ``Literal``, or a
    ``tuple[T, ...]`` written comma-separated).

    Raises:
        ValueError: ``text`` is not a value of that type; the message says what was expected.
    """
    annotation = _plain(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        if text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise ValueError(f"expected true or false, got {text!r}")
    if origin is Literal:
        if text not in args:
            raise ValueError(f"expected one of {', '.join(map(str, args))}, got {text!r}")
        return text
    if origin is tuple:
        return tuple(parse_value(args[0], t.strip()) for t in text.split(",") if t.strip())
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise ValueError(f"expected {'an integer' if annotation is int else 'a number'}, "
                             f"got {text!r}") from None  # fmt: skip
    return annotation(text)


def _argparse_type(annotation: Any) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_value(annotation, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(annotation, "__name__", "value")  # argparse's "invalid X value"
    return convert


def flag(name: str) -> str:
    """The option of field ``name``: ``--name-with-dashes``."""
    return "--" + name.replace("_", "-")


def _default_text(config_cls: type, name: str, presets: Mapping[str, Mapping] | None) -> str:
    default = {f.name: f.default for f in dataclasses.fields(config_cls)}[name]
    if default is dataclasses.MISSING or (default is None and name not in _preset_fields(presets)):
        return ""
    show = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    values = {p: preset.get(name, default) for p, preset in (presets or {}).items()}
    if len(set(map(show, values.values()))) > 1:
        listed = ", ".join(f"{p} {show(v)}" for p, v in values.items())
        return f" (default: the preset's: {listed})"
    return f" (default: {show(default)})"


def _preset_fields(presets: Mapping[str, Mapping] | None) -> set[str]:
    return {name for preset in (presets or {}).values() for name in preset}


def add_config_options(
    parser: argparse.ArgumentParser,
    config_cls: type,
    presets: Mapping[str, Mapping] | None = None,
    *,
    exclude: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
    choices: Mapping[str, Iterable[str]] | None = None,
    types_: Mapping[str, Callable[[str], Any]] | None = None,
    required: Iterable[str] = (),
    help_: Mapping[str, str] | None = None,
) -> None:
    """Add ``--field-name`` for every field of ``config_cls`` except ``exclude``, in an argument
    group named after the class.

    Args:
        presets: ``{name: {field: value}}``; the help lists each preset's value where they differ.
        aliases: ``{field: "--old-spelling"}``: a second option string of the same flag.
        choices: ``{field: allowed values}`` for fields whose annotation is not a ``Literal``.
        types_: ``{field: converter}`` replacing the converter of the annotation.
        required: fields that must be given (fields without a default always are).
        help_: ``{field: text}`` replacing the docstring's (where a command means more).

    Every option's default is None ("not given"): ``config_overrides`` keeps only given values.

    Raises:
        ValueError: ``exclude``/``aliases``/``choices``/``types_``/``required`` name a field the
            config does not have (a renamed field must not silently lose its flag).
    """
    aliases, choices, types_, help_ = aliases or {}, choices or {}, types_ or {}, help_ or {}
    exclude, required = set(exclude), set(required)
    docs, hints = field_docs(config_cls), field_types(config_cls)
    unknown = (exclude | set(aliases) | set(choices) | set(types_) | required | set(help_)) - set(
        hints
    )
    if unknown:
        raise ValueError(f"{config_cls.__name__} has no field {', '.join(sorted(unknown))}")
    group = parser.add_argument_group(
        f"{config_cls.__name__} options", "(generated from lapo's typed configs)"
    )
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        annotation = hints[f.name]
        strings = [flag(f.name), *([aliases[f.name]] if f.name in aliases else [])]
        text = help_.get(f.name) or docs[f.name].rstrip(".") or f.name.replace("_", " ")
        text = text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if f.name in required or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ):
            kwargs["required"] = True
        elif "default" not in text:
            text += _default_text(config_cls, f.name, presets)
        if annotation is bool and f.name not in types_:
            group.add_argument(*strings, action=argparse.BooleanOptionalAction, help=text, **kwargs)
            continue
        kwargs["type"] = types_.get(f.name) or _argparse_type(annotation)
        allowed = choices.get(f.name)
        if allowed is None and typing.get_origin(annotation) is Literal:
            allowed = typing.get_args(annotation)
        if allowed is not None:
            kwargs["choices"] = allowed if isinstance(allowed, tuple) else tuple(allowed)
            if len(kwargs["choices"]) > 6:  # long lists (games) go in the help, not the usage
                kwargs["metavar"] = f.name.upper()
                text += f"; one of: {', '.join(kwargs['choices'])}"
                if f.name == "env" and type(allowed).__name__ == "EnvChoices":  # Gymnasium too
                    text += ", or a Gymnasium id such as Pendulum-v1"
        elif typing.get_origin(annotation) is tuple:
            kwargs["metavar"] = "N,N,..."
        group.add_argument(*strings, help=text, **kwargs)


def config_overrides(
    config_cls: type, args: argparse.Namespace, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """The fields of ``config_cls`` given on the command line (``add_config_options``)."""
    exclude = set(exclude)
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config_cls)
        if f.name not in exclude and getattr(args, f.name, None) is not None
    }


def config_from_args(
    config_cls: type,
    presets: Mapping[str, Mapping] | None,
    preset: str | None,
    args: argparse.Namespace,
    *,
    exclude: Iterable[str] = (),
    **fixed: Any,
) -> Any:
    """``config_cls`` from a preset, then ``fixed`` values, then the options given.

    Raises:
        ValueError: an invalid value (the config's own validation).
    """
    base = dict(presets[preset]) if presets is not None and preset is not None else {}
    return config_cls(**{**base, **fixed, **config_overrides(config_cls, args, exclude)})


def parse_assignment(text: str, targets: Mapping[str, type]) -> tuple[str, str, Any]:
    """``--set STAGE.FIELD=VALUE`` -> ``(stage, field, value)``, the value parsed by the field's
    type; ``targets`` maps each stage name to its config class.

    Raises:
        ValueError: not of that form, an unknown stage or field (the message lists the valid
            names), or a value of the wrong type.
    """
    key, sep, value = text.partition("=")
    stage, dot, name = key.strip().partition(".")
    if not (sep and dot and name):
        raise ValueError(f"--set expects STAGE.FIELD=VALUE (e.g. lam.steps=500), got {text!r}")
    if stage not in targets:
        raise ValueError(
            f"--set {text}: unknown stage {stage!r}; valid stages: {', '.join(targets)}"
        )
    hints = field_types(targets[stage])
    if name not in hints:
        raise ValueError(
            f"--set {text}: {targets[stage].__name__} has no field {name!r}; valid fields: "
            f"{', '.join(hints)}"
        )
    try:
        return stage, name, parse_value(hints[name], value.strip())
    except ValueError as exc:
        raise ValueError(f"--set {text}: {exc}") from None


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum`` (a count of episodes, frames).

    Raises (from the returned function):
        argparse.ArgumentTypeError: not an integer, or below ``minimum``.
    """

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
        return value

    count.__name__ = f"integer >= {minimum}"  # argparse names the type in its messages
    return count


def json_file(text: str) -> Path:
    """An argparse ``type`` for a JSON output file: any path but an existing directory (checked
    before the work, not when the result is written). An existing file is replaced, as asked;
    ``/dev/stdout`` works.

    Raises (from argparse):
        argparse.ArgumentTypeError: ``text`` names an existing directory.
    """
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; expected a file path")
    return path


def device_name(text: str) -> str:
    """``--device`` values: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (checked without torch).

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device`` of a command that computes (default None: ``lapo.device.default_device()``)."""
    parser.add_argument(
        "--device",
        type=device_name,
        help="torch device: cpu, cuda, cuda:N or mps (default: CUDA when available, else MPS, "
        "else CPU)",
    )


def with_device(function: Callable, device: str | None) -> dict[str, Any]:
    """``{"device": device}`` when ``function`` takes a ``device`` argument and one was given,
    else ``{}``: the device reaches every API that accepts one as soon as it does.

    Raises:
        ValueError: a device other than the CPU was asked for and ``function`` cannot take it
            (it computes on its own default, which would silently ignore the request).
    """
    if device is None:
        return {}
    if "device" in inspect.signature(function).parameters:
        return {"device": device}
    if device != "cpu":
        raise ValueError(
            f"--device {device}: {function.__module__}.{function.__name__} does not take a "
            "device yet; leave --device out to use its default"
        )
    return {}
