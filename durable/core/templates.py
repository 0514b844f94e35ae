"""Templates in task configs: ``${params.date}``, ``${upstream.fetch.rows}``, ``${run_id}``.

A value rendered into a template never becomes code. What a value may turn into depends
on where it lands, so each place has its own rule:

- **shell commands**: every value is quoted for ``/bin/sh`` (``shlex.quote``), so it is
  always one word — ``;``, ``$(…)``, backticks, quotes and newlines are plain characters;
- **URLs**: a value is percent-encoded, except a template that opens the URL (a base URL
  from a param), which is inserted as it is;
- **header values and file paths**: a value with a line break or a NUL byte is refused,
  and a path value may not climb out with ``..``;
- anywhere else (SQL args, JSON bodies, env values): the value as it is, strings as text
  and everything else as JSON — these never meet an interpreter.

Pure: no I/O.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import msgspec

from durable.core.errors import DurableError

__all__ = ["Place", "TemplateError", "render"]

Place = Literal["text", "shell", "url", "header", "path"]

_TEMPLATE = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")


class TemplateError(DurableError):
    """A template names nothing, or a value cannot go where the template puts it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)


def render(text: str, values: Mapping[str, Any], place: Place = "text") -> str:
    """``text`` with each ``${a.b.c}`` replaced by its value, made safe for ``place``."""

    def lookup(match: re.Match[str]) -> str:
        value = _lookup(values, match.group(1), match.group(0))
        return _SAFE[place](_as_text(value), match.start() == 0, match.group(0))

    return _TEMPLATE.sub(lookup, text)


def _lookup(values: Mapping[str, Any], path: str, template: str) -> Any:
    value: Any = values
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            names = ", ".join(sorted(k for k in values if isinstance(k, str))) or "-"
            raise TemplateError(f"template {template} names nothing", hint=f"known: {names}")
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()  # numbers, lists, dicts: as JSON


def _as_is(text: str, _first: bool, _template: str) -> str:
    return text


def _shell(text: str, _first: bool, _template: str) -> str:
    return shlex.quote(text)


def _url(text: str, first: bool, _template: str) -> str:
    return text if first else quote(text, safe="")


def _header(text: str, _first: bool, template: str) -> str:
    if any(c in text for c in "\r\n\x00"):
        raise TemplateError(
            f"the value of {template} has a line break or NUL, which a header cannot hold",
            hint="pass such data in the body",
        )
    return text


def _path(text: str, first: bool, template: str) -> str:
    _header(text, first, template)
    if ".." in text.split("/"):
        raise TemplateError(f"the value of {template} climbs out of the path with '..'")
    return text


_SAFE: dict[str, Callable[[str, bool, str], str]] = {
    "text": _as_is,
    "shell": _shell,
    "url": _url,
    "header": _header,
    "path": _path,
}
