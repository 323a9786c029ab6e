"""One declaration per setting, and from it the flag, the file key, the ``--help`` line and the
error message.

A settings class is a dataclass whose fields are made with `setting`: the field's name, its
annotation (the type), its default, and a `Setting` (help, choices, check, how text or a file's
value becomes the field's value, its flag and key names). `detect.commands.flags` registers a
class's flags and builds it from those given (`from_values`); `from_mapping` builds it from a
YAML mapping (a site file's camera, a config file), with flags given over it; both check every
value and then call the class's ``validate(spell)`` for the checks that involve several
settings. Every error is a `UsageError`
in the spelling the user used (a file's: every bad key of the mapping together, a line each):

- a flag: ``--min-frames 0: use 1 or more``
- a file key: ``camera 'gate': min_frames: 0: use 1 or more``,
  ``camera 'gate': min_frame: unknown key (did you mean min_frames?)``

A field whose type is itself a settings class (the connection to a server, the detection
options) contributes its settings as if they were the outer class's: the same flags and keys.

No torch, no ONNX Runtime, no gRPC here; flags are `detect.commands.flags`'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from detect.errors import ConfigError, UsageError

T = TypeVar("T")

Check = Callable[[Any], str | None]
"""The fix for a bad value (``use 1 or more``), or None when the value is fine."""

Parse = Callable[[Any, Path, str], Any]
"""A flag's text or a file's value -> the field's value; ``root`` is the folder that relative
paths start from (the site file's, or the working folder for flags), ``what`` the setting as the
user spelled it, for messages. Raises `ConfigError`."""

_META = "detect.setting"


@dataclass(frozen=True)
class Setting:
    """What a field declares beyond its name, type and default.

    ``flag``: None for ``--name-with-dashes``, "" for none (a file key only); ``key``: None for
    the field's name, "" for none (a flag only); ``repeat``: the flag may be given several times
    (its texts reach ``parse`` as a list); ``positional``: the flag is a positional argument;
    ``group``: flags of one group exclude each other (see `add_flags`); ``required``: the flag
    must be given (a usage error otherwise); ``shown_default``: the default as ``--help`` shows
    it when it is not the field's own (None: the field's); ``const``: the flag may be given
    without a value, which then means this text (``--ray`` alone: a local Ray)."""

    help: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    parse: Parse | None = None
    flag: str | None = None
    key: str | None = None
    metavar: str | None = None
    repeat: bool = False
    positional: bool = False
    group: str | None = None
    required: bool = False
    shown_default: str | None = None
    const: str | None = None


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    **declared: Any,
) -> Any:
    """A dataclass field declaring a setting (keywords: those of `Setting`)."""
    spec = Setting(help=help, **declared)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_META: spec})
    return dataclasses.field(default=default, metadata={_META: spec})


def nested(
    cls: type,
    *,
    keys: bool = True,
    defaults: Mapping[str, Any] | None = None,
    skip: tuple[str, ...] = (),
) -> Any:
    """A field holding the settings class ``cls``, whose settings become this class's (as flags;
    as file keys too unless ``keys`` is False: a camera's server connection is the site's);
    ``defaults``: this verb's own defaults of some of them (`detect predict` keeps the best 100
    detections, `detect video` all); ``skip``: those this verb does not offer (they keep their
    defaults)."""
    defaults = dict(defaults or {})
    return dataclasses.field(
        default_factory=lambda: cls(**defaults),
        metadata={_META: None, "keys": keys, "defaults": defaults, "skip": tuple(skip)},
    )


# --------------------------------------------------------------------------- checks


def at_least(low: float) -> Check:
    """``low`` or more (None passes: "not set")."""
    return lambda v: None if v is None or v >= low else f"use {low:g} or more"


def more_than(low: float) -> Check:
    """More than ``low`` (None passes)."""
    return lambda v: None if v is None or v > low else f"use more than {low:g}"


def between(low: float, high: float) -> Check:
    """``low`` to ``high``, both included (None passes)."""
    return lambda v: None if v is None or low <= v <= high else f"use {low:g} to {high:g}"


def output_folder(path: Path | None) -> str | None:
    """The check of an output folder (``--out``): a folder, or one that can be made and written
    in (None passes). Nothing is made here."""
    if path is None:
        return None
    if os.path.exists(path) and not os.path.isdir(path):
        return "is a file; give a folder"
    return _writable(path)


def output_file(path: Path | None) -> str | None:
    """The check of an output file: not a folder, and in a folder that can be made and written
    in (None passes)."""
    if path is None:
        return None
    if os.path.isdir(path):
        return "is a folder; give a file name"
    return _writable(path.parent)


def pem_file(path: Path | None) -> str | None:
    """The check of a TLS certificate or key file: PEM text (``-----BEGIN ...``). A file that
    cannot be read passes: its reader says why."""
    try:
        head = path.read_bytes() if path is not None else b"-----BEGIN "
    except OSError:
        return None
    return None if b"-----BEGIN " in head else "is not PEM (no -----BEGIN line); give a PEM file"


def _writable(folder: Path) -> str | None:
    """Why ``folder`` cannot be made (or written in), from its nearest existing parent."""
    existing = folder
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"cannot make it: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot make it: {existing} is not writable (read-only or permission denied)"
    return None


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Declared:
    """One setting of a class, nested ones flattened: its field name, type, default and spec;
    ``path`` is the field names from the outer class down to it."""

    name: str
    type: Any
    default: Any
    spec: Setting
    path: tuple[str, ...]

    @property
    def flag(self) -> str | None:
        if self.spec.flag == "":
            return None
        if self.spec.positional:
            return self.name
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str | None:
        return None if self.spec.key == "" else (self.spec.key or self.name)


@functools.cache
def declared(cls: type) -> tuple[Declared, ...]:
    """Every setting of ``cls``, nested classes' included, in declaration order."""
    out: list[Declared] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _META not in f.metadata:
            continue
        if f.metadata[_META] is None:  # a nested settings class
            own, skipped = f.metadata["defaults"], f.metadata["skip"]
            for d in declared(hints[f.name]):
                if d.name in skipped:
                    continue
                spec = d.spec if f.metadata["keys"] else dataclasses.replace(d.spec, key="")
                default = own.get(d.name, d.default)
                out.append(
                    dataclasses.replace(d, spec=spec, default=default, path=(f.name, *d.path))
                )
            continue
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append(Declared(f.name, hints[f.name], default, f.metadata[_META], ()))
    return tuple(out)


def base_type(annotation: Any) -> tuple[Any, bool]:
    """``(the type without None, whether None is allowed)``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def is_sequence(base: Any) -> bool:
    return typing.get_origin(base) in (tuple, list)


class Spelling:
    """How the user wrote the settings: as flags or as the keys of a file (``where``: the part
    of the file, e.g. ``camera 'gate'``; ``flagged``: settings given as flags over the file's).
    ``spell(name)`` is a setting's name as the user wrote it."""

    def __init__(
        self, cls: type, kind: str, where: str = "", flagged: frozenset[str] = frozenset()
    ) -> None:
        self.kind = kind
        self.where = where
        self._names = {
            d.name: (d.flag if kind == FLAGS or d.name in flagged else d.key) or d.name
            for d in declared(cls)
        }

    def __call__(self, name: str) -> str:
        return self._names.get(name, name)

    def error(self, name: str, value: Any, fix: str) -> UsageError:
        """``--every 0: use 1 or more`` / ``camera 'gate': every: 0: use 1 or more``."""
        if self(name).startswith("-") or self.kind == FLAGS:
            shown = " ".join(map(str, value)) if isinstance(value, list | tuple) else value
            return UsageError(f"{self(name)} {shown}: {fix}")
        shown = value if isinstance(value, Path) else repr(value)
        return self.problem(f"{self(name)}: {shown}: {fix}")

    def problem(self, text: str) -> UsageError:
        """A message about one or several settings, placed in the file when it is one."""
        return UsageError(f"{self.where}: {text}" if self.where else text)


FLAGS = "flag"
KEYS = "key"


def checked_keys(
    cls: type, mapping: Mapping[str, Any], spell: Spelling, root: Path = Path()
) -> tuple[dict[str, Any], list[str]]:
    """``mapping``'s values parsed and checked, by field name, and one problem line for each key
    that is unknown (with the nearest known one) or whose value is refused (those keys are left
    out of the values)."""
    by_key = {d.key: d for d in declared(cls) if d.key is not None}
    typed: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in mapping.items():
        if key not in by_key:
            close = difflib.get_close_matches(str(key), list(by_key), n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(by_key))}"
            problems.append(str(spell.problem(f"{key}: unknown key ({hint})")))
            continue
        try:
            typed[by_key[key].name] = _values(by_key[key], raw, root, spell)
        except UsageError as exc:
            problems.extend(exc.problems)
    return typed, problems


def from_values(cls: type[T], values: Mapping[str, Any], **fixed: Any) -> T:
    """``cls`` from the values of the flags given, by setting name (texts, or what the parser
    made of them; the others keep their declared defaults) and ``fixed`` values; checked
    (`ConfigError` naming the flag)."""
    spell = Spelling(cls, FLAGS)
    return construct(cls, _typed(cls, dict(values), spell, Path()) | fixed, spell)


def from_mapping(
    cls: type[T],
    mapping: Mapping[str, Any],
    where: str,
    root: Path = Path(),
    flags: Mapping[str, Any] | None = None,
    **fixed: Any,
) -> T:
    """``cls`` from a file's keys (relative paths start at ``root``), the values of the flags
    given over them (``flags``, by setting name: a flag of a `Setting.group` drops the file's
    value of that group) and ``fixed`` values; checked (`UsageError` naming ``where`` and the
    key, or the flag: every bad key of ``mapping`` at once, then the checks of several)."""
    flags = dict(flags or {})
    spell = Spelling(cls, KEYS, where, frozenset(flags))
    found = {d.name: d for d in declared(cls)}
    groups = {found[name].spec.group for name in flags} - {None}
    by_key = {d.key: d for d in declared(cls) if d.key is not None}
    mapping = {
        k: v for k, v in mapping.items() if k not in by_key or by_key[k].spec.group not in groups
    }
    # a file's value in its key's spelling, even when a flag of that setting is given too
    typed, problems = checked_keys(cls, mapping, Spelling(cls, KEYS, where), root)
    if problems:
        raise UsageError(*problems, where=where)
    typed |= _typed(cls, flags, Spelling(cls, FLAGS), Path())
    return construct(cls, typed | fixed, spell)


def _coerce(d: Declared, value: Any, root: Path, spell: Spelling) -> Any:
    """A file's (or a flag's already typed) value as the field's type."""
    base, optional = base_type(d.type)
    if value is None:
        if optional:
            return None
        raise spell.error(d.name, value, "give a value")
    if base is bool:
        if not isinstance(value, bool):
            raise spell.error(d.name, value, "use true or false")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise spell.error(d.name, value, "use a whole number")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise spell.error(d.name, value, "use a number")
        return float(value)
    if base is Path:
        if not isinstance(value, str | Path):
            raise spell.error(d.name, value, "use a file path")
        return root / value
    if is_sequence(base):
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list | tuple) or any(
            isinstance(v, bool | dict | list) for v in value
        ):
            raise spell.error(d.name, value, "use a list of names")
        element = (typing.get_args(base) or (str,))[0]
        if element is Path:
            return tuple(root / str(v) for v in value)
        if element in (int, float):
            kind = "whole numbers" if element is int else "numbers"
            try:
                if any(isinstance(v, bool) for v in value):
                    raise ValueError(value)
                return tuple(element(v) for v in value)
            except (TypeError, ValueError):
                raise spell.error(d.name, value, f"use a list of {kind}") from None
        return tuple(str(v) for v in value)
    if base is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise spell.error(d.name, value, "use a text")
        return str(value)
    return value


def _values(d: Declared, raw: Any, root: Path, spell: Spelling) -> Any:
    if d.spec.parse is not None:
        try:
            value = d.spec.parse(raw, root, spell(d.name))
        except ConfigError as exc:
            raise spell.problem(str(exc)) from None
    else:
        value = _coerce(d, raw, root, spell)
    if d.spec.choices is not None and value not in d.spec.choices:
        raise spell.error(d.name, raw, f"use one of {', '.join(map(str, d.spec.choices))}")
    fix = d.spec.check(value) if d.spec.check is not None else None
    if fix is not None:
        raise spell.error(d.name, raw, fix)
    return value


def _typed(cls: type, values: dict[str, Any], spell: Spelling, root: Path) -> dict[str, Any]:
    """Raw ``values`` by field name, each parsed and checked."""
    found = {d.name: d for d in declared(cls)}
    return {name: _values(found[name], raw, root, spell) for name, raw in values.items()}


def construct(cls: type[T], typed: dict[str, Any], spell: Spelling) -> T:
    """``cls`` from typed values by field name, nested classes built from theirs, validated."""
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get(_META, ...) is None:  # nested: built from its own settings' values
            inner = {d.name for d in declared(hints[f.name])}
            value = typed.get(f.name)
            if value is None:
                own = {k: v for k, v in typed.items() if k in inner}
                value = construct(hints[f.name], f.metadata["defaults"] | own, spell)
            kwargs[f.name] = value
        elif f.name in typed:
            kwargs[f.name] = typed[f.name]
    made = cls(**kwargs)
    validate = getattr(made, "validate", None)
    if validate is not None:
        validate(spell)
    return made


def with_absolute_paths(settings: T) -> T:
    """``settings`` (a settings dataclass) with its paths, and those of the settings nested in
    it, absolute: for another process, whose working folder is not this one's (a Ray actor)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if not f.init:
            continue
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            changes[f.name] = value.absolute()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = with_absolute_paths(value)
    return dataclasses.replace(settings, **changes)


def check(settings: Any, spell: Spelling | None = None) -> None:
    """What building from flags or a file checks, for settings made in code: each declared
    setting's choices and check on its value when it is not the default, then
    ``validate(spell)``. `ConfigError` in
    ``spell``'s spelling (the flags' when None)."""
    cls = type(settings)
    spell = spell or Spelling(cls, FLAGS)
    for d in declared(cls):
        holder = settings
        for name in d.path:
            holder = getattr(holder, name)
        value = getattr(holder, d.name)
        if value is d.default or value == d.default:  # a default means "not set": it passes
            continue
        if d.spec.choices is not None and value not in d.spec.choices:
            raise spell.error(d.name, value, f"use one of {', '.join(map(str, d.spec.choices))}")
        fix = d.spec.check(value) if d.spec.check is not None else None
        if fix is not None:
            raise spell.error(d.name, value, fix)
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate(spell)
