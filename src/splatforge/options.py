"""Options as nested dataclasses: built from JSON or `key=value` strings, validated, written back.

Every stage has one options dataclass; `splatforge run`, a stage's own command, a job of the service and
the bench all fill it through these functions, so a knob exists once and is reachable from each of them:

    apply_overrides(options, {"mapper": "global", "strategy.cap_max": "200000"})  -> a new options object
    from_dict(PoseOptions, {"mapper": "global"})                                 -> PoseOptions
    to_dict(options)                                                             -> JSON-able dict

Values are coerced from their annotation (strings from the command line, JSON values from a job), and
anything unknown or ill-typed is an `InputError` that names the valid keys — before any stage runs. A
field typed as a union of dataclasses (e.g. the training strategy) also accepts the name of one of them
(its `kind` class attribute). Nothing here imports torch: validating options must stay instant.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from splatforge.errors import InputError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(obj_or_cls: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj_or_cls) if f.init}


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """`value` (a JSON value, or a string from the command line) as the type `annotation` names."""
    members = _members(annotation)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in members):
        if type(None) in members or annotation is Any:
            return None
        raise InputError(f"{where} cannot be empty", f"give a value of type {_type_name(annotation)}")
    errors = []
    for member in (m for m in members if m is not type(None)):
        try:
            return _coerce_one(value, member, where)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise InputError(f"{where}={value!r} is not a valid {_type_name(annotation)}",
                     errors[0] if len(errors) == 1 else f"give a value of type {_type_name(annotation)}")


def _coerce_one(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if isinstance(value, str) and value == getattr(kind, "kind", None):
            return kind()
        if isinstance(value, str) and value.lstrip().startswith("{"):
            value = json.loads(value)
        if isinstance(value, Mapping):
            given = value.get("kind", getattr(kind, "kind", None))
            if given != getattr(kind, "kind", None):
                raise ValueError(f"not a {kind.__name__}")
            return from_dict(kind, {k: v for k, v in value.items() if k != "kind"}, where)
        raise ValueError(f"expected {getattr(kind, 'kind', kind.__name__)!r} or an object")
    if origin is typing.Literal:
        if value in typing.get_args(kind):
            return value
        raise ValueError(f"use one of: {', '.join(map(str, typing.get_args(kind)))}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError("use true or false")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            number = float(value.replace("_", ""))
            if number.is_integer():
                return int(number)
        raise ValueError("expected a whole number")
    if kind is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value.replace("_", "") if isinstance(value, str) else value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected text")
    if kind is Path:
        if isinstance(value, (str, Path)) and str(value):
            return Path(value)
        raise ValueError("expected a path")
    if origin in (tuple, list):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:  # `ply,spz` on a command line: a list of words
                value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError("expected a list")
        args = typing.get_args(kind)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce_one(v, args[0], where) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ValueError(f"expected {len(args)} values")
            return tuple(_coerce_one(v, a, where) for v, a in zip(value, args))
        return [_coerce_one(v, args[0], where) for v in value] if args else list(value)
    if origin is dict or kind is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, Mapping):
            raise ValueError("expected an object")
        return dict(value)
    if isinstance(kind, type) and isinstance(value, kind):
        return value
    raise TypeError(f"cannot read a {kind!r} option")


def _type_name(annotation: Any) -> str:
    names = []
    for m in _members(annotation):
        if m is type(None):
            continue
        if dataclasses.is_dataclass(m):
            names.append(repr(getattr(m, "kind", m.__name__)))
        elif typing.get_origin(m) is typing.Literal:
            names.append(" | ".join(map(str, typing.get_args(m))))
        else:
            names.append(getattr(m, "__name__", str(m)))
    return " or ".join(names)


def _validated(obj: Any, where: str) -> Any:
    """Run the dataclass's own `validate()` (cross-field rules), as an InputError."""
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            raise InputError(f"{where}: {exc}" if where else str(exc), "see `splatforge run --help`") from None
    return obj


def _construct(cls: type, values: dict[str, Any], where: str) -> Any:
    try:
        return cls(**values)
    except ValueError as exc:  # __post_init__ checks (e.g. PoseOptions)
        raise InputError(f"{where}: {exc}" if where else str(exc), "see `splatforge run --help`") from None


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """An instance of dataclass `cls` from a mapping; unknown keys are refused with the list of known ones."""
    return apply_overrides(cls(), data, where)


def apply_overrides(obj: Any, overrides: Mapping[str, Any], where: str = "") -> Any:
    """A copy of dataclass `obj` with `overrides` applied. Keys may be dotted (`strategy.cap_max`) or
    nested mappings; a field marked `metadata={"overrides": Cls}` collects keys that are fields of `Cls`
    (checked against it) — how a stage's options hold changes to a recipe without copying its fields."""
    known = _fields(obj)
    hints = _hints(type(obj))
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        path = f"{where}.{head}" if where else head
        if head not in known:
            collector = next((f for f in known.values() if "overrides" in f.metadata), None)
            if collector is not None and head in _fields(collector.metadata["overrides"]):
                nested.setdefault(collector.name, {})[key] = value
                continue
            valid = sorted(known) + (sorted(_fields(collector.metadata["overrides"])) if collector else [])
            raise InputError(f"unknown option {path!r}", f"known options{' of ' + where if where else ''}: "
                                                          f"{', '.join(valid)}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif isinstance(value, str) and value == getattr(getattr(obj, head), "kind", None):
            continue  # already that kind: keep its values
        elif isinstance(value, Mapping) and _is_dataclass_field(hints[head]):
            nested.setdefault(head, {}).update(value)
        else:
            changes[head] = coerce(value, hints[head], path)
    for head, sub in nested.items():
        path = f"{where}.{head}" if where else head
        field = known[head]
        if "overrides" in field.metadata:
            recipe = field.metadata["overrides"]
            current = dict(changes.get(head, getattr(obj, head)) or {})
            current.update(sub)
            apply_overrides(recipe(), current, where)  # checks keys and types now, not at run time
            changes[head] = {k: _coerce_path(recipe, k, v, where) for k, v in current.items()}
            continue
        base = changes.get(head, getattr(obj, head))
        choices = [m for m in _members(hints[head]) if dataclasses.is_dataclass(m)]
        if not choices:
            raise InputError(f"option {path!r} has no sub-options", f"set it directly: {path}=VALUE")
        if "kind" in sub:  # {"kind": "mcmc", ...}: that member of the union, then its fields
            wanted = sub.pop("kind")
            if getattr(base, "kind", None) != wanted:
                base = coerce(wanted, hints[head], f"{path}.kind")
        elif not dataclasses.is_dataclass(base):
            base = choices[0]()
        changes[head] = apply_overrides(base, sub, path)
    if not changes:
        return _validated(obj, where)
    values = {name: getattr(obj, name) for name in known}
    values.update(changes)
    return _validated(_construct(type(obj), values, where), where)


def _coerce_path(cls: type, dotted: str, value: Any, where: str) -> Any:
    """`value` as the type of the (possibly nested) field `dotted` of dataclass `cls`; a dataclass given by
    name or as an object is kept as the caller wrote it (it is rebuilt when applied)."""
    head, _, rest = dotted.partition(".")
    annotation = _hints(cls)[head]
    if not rest:
        return value if _is_dataclass_field(annotation) else coerce(value, annotation, f"{where}.{dotted}")
    for member in _members(annotation):
        if dataclasses.is_dataclass(member) and rest.partition(".")[0] in _fields(member):
            return _coerce_path(member, rest, value, f"{where}.{head}")
    return value


def _is_dataclass_field(annotation: Any) -> bool:
    return any(dataclasses.is_dataclass(m) for m in _members(annotation))


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """`["train.steps=100", "poses.mapper=global"]` -> {"train.steps": "100", ...} (command-line --set)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r} is not KEY=VALUE", "e.g. --set train.steps=3000 --set poses.mapper=global")
        out[key.strip()] = value.strip()
    return out


def to_dict(obj: Any) -> Any:
    """JSON-able form of an options object (nested dataclasses as objects, paths as strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        kind = getattr(type(obj), "kind", None)
        return {"kind": kind, **out} if isinstance(kind, str) and "kind" not in out else out
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def comparable(obj: Any) -> Any:
    """`to_dict` without the fields marked `metadata={"runtime": True}` (how and where a stage runs, not
    what it computes): two option sets that compare equal here produce the same outputs."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: comparable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.init and not f.metadata.get("runtime")}
    return to_dict(obj)


def runtime(default: Any = None, **kwargs: Any) -> Any:
    """A dataclass field that changes how a stage runs, not its result (excluded from `comparable`)."""
    if "default_factory" in kwargs:
        return dataclasses.field(metadata={"runtime": True}, **kwargs)
    return dataclasses.field(default=default, metadata={"runtime": True}, **kwargs)
