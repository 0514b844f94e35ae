"""proto/ is generated from the code; this fails when the two drift apart."""

from __future__ import annotations

from pathlib import Path

import msgspec

from durable.contracts import CONTRACTS, render
from durable.core.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent


def test_committed_contracts_match_the_code() -> None:
    for name, make in CONTRACTS.items():
        committed = (ROOT / "proto" / name).read_text()
        assert committed == render(name, make()), (
            f"proto/{name} is out of date: run `python -m durable.contracts` and commit it"
        )


def test_the_schema_names_every_event_tag() -> None:
    schema = msgspec.json.decode((ROOT / "proto" / "events.schema.json").read_text())
    tags = {t.__struct_config__.tag for t in EVENT_TYPES}
    assert set(schema["x-durable-versions"]) == tags
    encoded = {
        d["properties"]["type"]["enum"][0]
        for d in schema["$defs"].values()
        if "type" in d.get("properties", {}) and "enum" in d["properties"]["type"]
    }
    assert tags <= encoded
