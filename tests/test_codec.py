"""The versioned event codec: upcasters and clear errors for bad records."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from durable.core.errors import MalformedEvent, UnknownEventType
from durable.core.events import REGISTRY, EventRegistry, RunStarted


class Shipped(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="shipped"):
    """Version 3: ``carrier`` became structured; version 2 renamed ``qty`` to ``quantity``."""

    VERSION: ClassVar[int] = 3
    quantity: int
    carrier: dict[str, str]


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["quantity"] = data.pop("qty")
    return data


def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "carrier": {"name": data["carrier"]}}


REG = EventRegistry([Shipped], {("shipped", 1): v1_to_v2, ("shipped", 2): v2_to_v3})


def test_old_versions_decode_through_the_upcaster_chain() -> None:
    current = Shipped(quantity=3, carrier={"name": "dhl"})
    assert REG.decode("shipped", 1, b'{"type":"shipped","qty":3,"carrier":"dhl"}') == current
    assert REG.decode("shipped", 2, b'{"quantity":3,"carrier":"dhl"}') == current
    tag, version, data = REG.encode(current)
    assert (tag, version) == ("shipped", 3)
    assert REG.decode(tag, version, data) == current


def test_a_missing_upcaster_is_a_clear_error() -> None:
    reg = EventRegistry([Shipped], {("shipped", 2): v2_to_v3})
    with pytest.raises(MalformedEvent, match="no upcaster from shipped version 1 to 2"):
        reg.decode("shipped", 1, b'{"qty":3,"carrier":"dhl"}')


def test_bad_records_name_where_and_what() -> None:
    with pytest.raises(UnknownEventType) as info:
        REGISTRY.decode("task_exploded", 1, b"{}", where="run.jsonl:4")
    assert "run.jsonl:4" in str(info.value) and "task_exploded" in str(info.value)
    assert "run_created" in str(info.value)  # lists the known types
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        REGISTRY.decode("run_started", 1, b"{nope")
    with pytest.raises(MalformedEvent, match="invalid task_succeeded event"):
        REGISTRY.decode("task_succeeded", 1, b'{"type":"task_succeeded","task":1}')
    with pytest.raises(MalformedEvent, match="newer than this durable knows"):
        REGISTRY.decode("run_started", 9, b'{"type":"run_started"}')
    with pytest.raises(MalformedEvent, match="data says type 'run_paused'"):
        REGISTRY.decode("run_started", 1, b'{"type":"run_paused"}')
    assert REGISTRY.decode("run_started", 1, b'{"type":"run_started"}') == RunStarted()
