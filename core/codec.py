"""Wire encoding of commands, events and actor messages: the same dataclasses, as versioned JSON (ujson).

A dataclass or NamedTuple instance becomes an object `{"@": "<ClassName>", "<field>": value, ...}`; enums become their
wire value, `Decimal` its exact text, tuples lists. Decoding rebuilds the instances from the class's type
hints, so a decoded message equals the original. An envelope carries `WIRE_VERSION`; anything malformed
or of an unknown type raises `CodecError` (callers log it and skip the message).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

import ujson

WIRE_VERSION = 1


class CodecError(ValueError):
    """A message that cannot be decoded."""


_REGISTRY: dict[str, type] = {}
_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}


_NAMED_TUPLES: set[type] = set()


def register(*classes: type) -> None:
    for cls in classes:
        _REGISTRY[cls.__name__] = cls
        if issubclass(cls, tuple):
            _NAMED_TUPLES.add(cls)


def _field_plan(cls: type) -> tuple[tuple[str, Any], ...]:
    plan = _FIELDS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        if dataclasses.is_dataclass(cls):
            plan = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
        else:
            plan = tuple((name, hints[name]) for name in cls._fields)  # type: ignore[attr-defined]
        _FIELDS[cls] = plan
    return plan


_PLAIN = (int, str, bool, type(None))
_FAST: dict[type, tuple[str, tuple[str, ...]]] = {}


def _fast_record(value: Any) -> dict[str, Any] | None:
    """NamedTuple records (events, orders, replies: the bulk of the traffic) without per-field lookups."""
    kind = type(value)
    plan = _FAST.get(kind)
    if plan is None:
        if kind not in _NAMED_TUPLES:
            return None
        plan = _FAST[kind] = (kind.__name__, tuple(name for name, _ in _field_plan(kind)))
    out: dict[str, Any] = {"@": plan[0]}
    for name, item in zip(plan[1], value):
        out[name] = item if type(item) in _PLAIN else to_wire(item)
    return out


def to_wire(value: Any) -> Any:
    """A JSON-able form of `value`."""
    if value is None or type(value) in (int, str, bool):
        return value
    if isinstance(value, Enum):
        return value.value
    if type(value) in _NAMED_TUPLES:
        return _fast_record(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"@": type(value).__name__}
        for name, _ in _field_plan(type(value)):
            out[name] = to_wire(getattr(value, name))
        return out
    if isinstance(value, (tuple, list)):
        return [to_wire(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_wire(item) for key, item in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int):  # IntEnum is handled above; other int subclasses
        return int(value)
    raise CodecError(f"cannot encode {type(value).__name__}")


def from_wire(data: Any, hint: Any = object) -> Any:
    """Rebuild a value from its wire form, guided by the type `hint` (object: self-described)."""
    if isinstance(data, dict) and "@" in data:
        cls = _REGISTRY.get(data["@"])
        if cls is None:
            raise CodecError(f"unknown message type {data['@']!r}")
        kwargs = {}
        for name, field_hint in _field_plan(cls):
            if name not in data:
                raise CodecError(f"{cls.__name__} lacks {name}")
            kwargs[name] = from_wire(data[name], field_hint)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise CodecError(f"bad {cls.__name__}: {error}") from error
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return from_wire(data, options[0] if len(options) == 1 else object)
    if origin is tuple:
        if not isinstance(data, list):
            raise CodecError("expected a list")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_wire(item, args[0]) for item in data)
        if args and len(args) == len(data):
            return tuple(from_wire(item, arg) for item, arg in zip(data, args))
        return tuple(from_wire(item) for item in data)
    if origin is dict:
        if not isinstance(data, dict):
            raise CodecError("expected an object")
        value_hint = typing.get_args(hint)[1] if typing.get_args(hint) else object
        return {key: from_wire(item, value_hint) for key, item in data.items()}
    if isinstance(hint, type):
        if issubclass(hint, Enum):
            try:
                return hint(data)
            except ValueError as error:
                raise CodecError(str(error)) from error
        if hint is Decimal:
            if not isinstance(data, str):
                raise CodecError("expected decimal text")
            try:
                return Decimal(data)
            except InvalidOperation as error:
                raise CodecError(f"bad decimal {data!r}") from error
        if hint in (int, str, bool):
            if type(data) is not hint:
                raise CodecError(f"expected {hint.__name__}, got {type(data).__name__}")
            return data
    if isinstance(data, list):
        return tuple(from_wire(item) for item in data)
    return data


def dumps(message: Any) -> str:
    """An envelope `{"v": WIRE_VERSION, "m": <message>}` as JSON text."""
    return ujson.dumps({"v": WIRE_VERSION, "m": to_wire(message)}, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    try:
        envelope = ujson.loads(text)
    except (ValueError, TypeError) as error:
        raise CodecError(f"not JSON: {error}") from error
    if not isinstance(envelope, dict) or envelope.get("v") != WIRE_VERSION or "m" not in envelope:
        raise CodecError("not an openbell envelope of a known version")
    return from_wire(envelope["m"])


def _register_all() -> None:
    from openbell.core import commands, events, grid, marketdata, summary

    for module in (commands, events, grid, marketdata, summary):
        for value in vars(module).values():
            is_record = dataclasses.is_dataclass(value) or (
                isinstance(value, type) and issubclass(value, tuple) and hasattr(value, "_fields")
            )
            if isinstance(value, type) and is_record and value.__module__ == module.__name__:
                register(value)


_register_all()
