"""The versioned codec of events: encode once, decode stored data of any version.

When an event's shape changes, its class gets a higher ``VERSION`` and an upcaster (a
pure ``dict -> dict`` function) turns the stored older shape into the new one while
decoding. Every store and the export format share one :class:`EventRegistry`.

Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import msgspec

from durable.core.errors import MalformedEvent, UnknownEventType
from durable.core.events.envelope import EVENT_TYPES, event_type

__all__ = ["REGISTRY", "EventRegistry", "Upcaster"]

Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
"""A pure function from the stored data of version N to the data of version N + 1."""


class EventRegistry:
    """Encodes events and decodes stored ones, upcasting older versions on the way.

    ``upcasters`` maps ``(tag, from_version)`` to the function that lifts data of that
    version by one. Data already at the current version decodes on a fast path with no
    upcasting.
    """

    def __init__(
        self,
        types: Iterable[type[Any]] = EVENT_TYPES,
        upcasters: dict[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self._types: dict[str, type[Any]] = {t.__struct_config__.tag: t for t in types}
        self._upcasters = dict(upcasters or {})
        union = tuple(self._types.values())
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            union[0] if len(union) == 1 else _union(union)
        )
        self._encoder = msgspec.json.Encoder()

    @property
    def tags(self) -> list[str]:
        return sorted(self._types)

    def version_of(self, tag: str) -> int:
        return int(self._type(tag).VERSION)

    def encode(self, event: Any) -> tuple[str, int, bytes]:
        """``(tag, version, JSON bytes)``; the JSON includes the ``type`` tag."""
        cls = type(event)
        return cls.__struct_config__.tag, cls.VERSION, self._encoder.encode(event)

    def decode(self, tag: str, version: int, data: bytes | str, *, where: str = "") -> Any:
        """Decode stored data of ``tag`` at ``version`` into the current event class."""
        cls = self._type(tag, where=where)
        try:
            if version == cls.VERSION:
                event = self._decoder.decode(data)
                if type(event) is not cls:
                    raise MalformedEvent(
                        where or tag,
                        f"data says type {event_type(event)!r} but the record says {tag!r}",
                    )
                return event
            if version > cls.VERSION:
                raise MalformedEvent(
                    where or tag,
                    f"{tag} version {version} is newer than this durable knows ({cls.VERSION})",
                    hint="upgrade durable to read this history",
                )
            raw = msgspec.json.decode(data)
            if not isinstance(raw, dict):
                raise MalformedEvent(where or tag, "event data is not a JSON object")
            for v in range(version, cls.VERSION):
                up = self._upcasters.get((tag, v))
                if up is None:
                    raise MalformedEvent(
                        where or tag,
                        f"no upcaster from {tag} version {v} to {v + 1}",
                        hint="this history predates a format durable no longer reads",
                    )
                raw = up(raw)
            raw["type"] = tag
            return msgspec.convert(raw, cls)
        except msgspec.ValidationError as exc:
            raise MalformedEvent(where or tag, f"invalid {tag} event: {exc}") from None
        except msgspec.DecodeError as exc:
            raise MalformedEvent(where or tag, f"not valid JSON: {exc}") from None

    def _type(self, tag: str, *, where: str = "") -> type[Any]:
        try:
            return self._types[tag]
        except KeyError:
            raise UnknownEventType(tag, list(self._types), where=where) from None


def _union(types: tuple[type[Any], ...]) -> Any:
    # typing.Union of a runtime tuple: msgspec accepts it as a tagged union.
    from typing import Union

    return Union[types]  # noqa: UP007


REGISTRY = EventRegistry()
"""The registry of this version of durable's events (no older versions exist yet)."""
