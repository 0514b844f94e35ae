"""Run params checked against their declared types: JSON values validated, text parsed.

Two doors, one strictness. A JSON value (an HTTP body, a webhook, a Kafka message's
payload) is *validated* against the declared type and never converted: a number is not a
date, ``null`` is not a str, ``1.9`` is not an int, ``true`` is not a float, an object is
not a str. A text value (``--param k=v`` on the CLI, a query string, a Kafka header, an
S3 key) is *parsed* from text with the same strictness: ``"7"`` is an int, ``"1.9"`` is
not. Both use msgspec's own conversion with the declared Python types.

Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from durable.core.spec import DefinitionError, ParamSpec

__all__ = ["ParamError", "check_params", "parse_text_params", "validate_params"]

_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "date": dt.date}
_EXAMPLES = {
    "str": "text",
    "int": "a whole number, e.g. 7",
    "float": "a number, e.g. 0.5",
    "bool": "true or false",
    "date": "a date as YYYY-MM-DD, e.g. 2026-11-21",
    "json": "any JSON value",
}
_TEXT_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


class ParamError(DefinitionError):
    """A param whose value does not have its declared type; nothing was recorded."""

    def __init__(self, where: str, name: str, expected: str, value: Any, *, text: bool) -> None:
        shown = repr(value) if text else msgspec.json.encode(value).decode()[:200]
        kind = "text" if text else _json_kind(value)
        super().__init__(
            where,
            f"param {name!r}: expected {expected}, got {shown} ({kind})",
            hint=f"{name} takes {_EXAMPLES.get(expected, expected)}",
        )
        self.name = name
        self.expected = expected
        self.value = value


def validate_params(
    specs: Mapping[str, ParamSpec], given: Mapping[str, Any], *, where: str = "params"
) -> dict[str, Any]:
    """JSON values checked against their declared types, defaults filled in.

    Raises :class:`ParamError` naming the param, the expected type and the value, or
    :class:`DefinitionError` for an unknown or a missing required param.
    """
    return check_params(specs, given, where=where)


def parse_text_params(
    specs: Mapping[str, ParamSpec], given: Mapping[str, str], *, where: str = "params"
) -> dict[str, Any]:
    """Text values parsed into their declared types, defaults filled in."""
    return check_params(specs, given, text=given.keys(), where=where)


def check_params(
    specs: Mapping[str, ParamSpec],
    given: Mapping[str, Any],
    *,
    text: Collection[str] = (),
    where: str = "params",
) -> dict[str, Any]:
    """Params from a door that has both kinds (a Kafka message: its payload is JSON, its
    key and headers are text): the values named in ``text`` parsed, the others
    validated; defaults filled in."""
    values = _known(specs, given, where)
    out = {
        name: (
            _text_value(where, name, specs[name].type, v)
            if name in text
            else _json_value(where, name, specs[name].type, v)
        )
        for name, v in values.items()
    }
    return out | {name: spec.default for name, spec in specs.items() if name not in values}


def _known(specs: Mapping[str, ParamSpec], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise DefinitionError(
            where,
            f"unknown param {unknown[0]!r}",
            hint=f"declared params: {', '.join(specs) or '(none)'}",
        )
    for name, spec in specs.items():
        if name not in given and spec.required:
            raise DefinitionError(where, f"param {name!r} is required", hint=f"give {name}")
    return dict(given)


def _json_value(where: str, name: str, type_: str, value: Any) -> Any:
    if type_ == "json":
        return value
    target = _TYPES[type_]
    try:
        # strict: a bool is not a number, a float is not an int, nothing becomes a str;
        # an integer is a float (JSON has one number type)
        converted = msgspec.convert(value, target, strict=True)
    except msgspec.ValidationError:
        raise ParamError(where, name, type_, value, text=False) from None
    if type_ == "float" and not math.isfinite(converted):
        raise ParamError(where, name, type_, value, text=False)
    return converted.isoformat() if type_ == "date" else converted


def _text_value(where: str, name: str, type_: str, text: str) -> Any:
    if not isinstance(text, str):
        raise ParamError(where, name, type_, text, text=False)
    try:
        match type_:
            case "str":
                return text
            case "json":
                return msgspec.json.decode(text)
            case "bool":
                return _TEXT_BOOL[text.strip().lower()]
            case "date":
                return msgspec.convert(text, dt.date).isoformat()
            case "int":
                return msgspec.convert(text, int, strict=False)
            case "float":
                value = msgspec.convert(text, float, strict=False)
                if math.isfinite(value):
                    return value
    except (msgspec.ValidationError, msgspec.DecodeError, KeyError):
        pass
    raise ParamError(where, name, type_, text, text=True)


def _json_kind(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__
