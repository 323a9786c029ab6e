"""The command-line side of `detect.settings`: a settings class's declarations as argparse flags
(`add_flags`), and the class built from the flags given (`from_flags`, `given_flags`)."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any, TypeVar

from detect.settings import Declared, base_type, declared, from_values, is_sequence

T = TypeVar("T")


def _help(d: Declared) -> str:
    text = d.spec.help
    shown = d.spec.shown_default
    unset = d.default is None or d.default is False or d.default in ((), [], "")
    if shown is None and not unset and "(default" not in text:
        shown = str(d.default)
    return f"{text} (default: {shown})" if shown and "(default" not in text else text


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    required_groups: tuple[str, ...] = (),
) -> None:
    """Register the flags of ``cls``'s settings (but those in ``skip``). A flag not given stays
    out of the parsed namespace, so a file's value or the declared default applies;
    ``required_groups``: groups (`Setting.group`) of which one flag must be given."""
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for d in declared(cls):
        if d.flag is None or d.name in skip:
            continue
        target: Any = parser
        if d.spec.group is not None:
            if d.spec.group not in groups:
                groups[d.spec.group] = parser.add_mutually_exclusive_group(
                    required=d.spec.group in required_groups
                )
            target = groups[d.spec.group]
        kwargs: dict[str, Any] = {"help": _help(d)}
        if not d.spec.positional:
            kwargs |= {"dest": d.name, "default": argparse.SUPPRESS}
            if d.spec.required:
                kwargs["required"] = True
        base, _ = base_type(d.type)
        if d.spec.metavar:
            kwargs["metavar"] = d.spec.metavar
        if bool in typing.get_args(d.type):  # true/false, or (a file's) a mapping: `parse`s
            kwargs["action"] = argparse.BooleanOptionalAction
        elif d.spec.parse is not None:
            kwargs["action"] = "append" if d.spec.repeat else "store"
        elif base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif is_sequence(base):  # a positional list not required may be empty
            kwargs["nargs"] = "*" if d.spec.positional and not d.spec.required else "+"
            element = (typing.get_args(base) or (str,))[0]
            if element in (int, float):
                kwargs["type"] = element
        else:
            kwargs["type"] = base if base in (int, float, Path) else str
            if d.spec.choices is not None:
                kwargs["choices"] = d.spec.choices
            if d.spec.const is not None:
                kwargs |= {"nargs": "?", "const": d.spec.const}
        target.add_argument(d.flag, **kwargs)


def given_flags(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The values of ``cls``'s flags that were given, by setting name."""
    given = vars(args)
    return {d.name: given[d.name] for d in declared(cls) if d.flag and d.name in given}


def from_flags(cls: type[T], args: argparse.Namespace, **fixed: Any) -> T:
    """``cls`` from the flags given (the others keep their declared defaults) and ``fixed``
    values; checked (`ConfigError` naming the flag)."""
    return from_values(cls, given_flags(cls, args), **fixed)
