"""Language-neutral contracts generated from the code, committed under ``proto/``.

``python -m durable.contracts`` rewrites them; a test fails when the committed files and
the code drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from durable.core.events import EVENT_TYPES, Event
from durable.core.history import ExportedEvent

__all__ = ["CONTRACTS", "events_schema", "render", "write"]


def events_schema() -> dict[str, Any]:
    """JSON Schema of every event (a tagged union on ``type``) and of the export line."""
    (event_ref, line_ref), components = msgspec.json.schema_components(
        [Event, ExportedEvent], ref_template="#/$defs/{name}"
    )
    versions = {t.__struct_config__.tag: t.VERSION for t in EVENT_TYPES}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:durable:proto:events",
        "title": "durable run events",
        "description": (
            "Every event of a run's log. 'type' is the stable tag; x-durable-versions gives "
            "each tag's current schema version. A line of `durable export` is an ExportedEvent whose data is one event."
        ),
        "x-durable-versions": versions,
        "oneOf": [event_ref, line_ref],
        "$defs": components,
    }


def openapi() -> dict[str, Any]:
    from durable.api.openapi import openapi_spec  # the API layer, only when asked

    return openapi_spec()


def render(name: str, schema: dict[str, Any]) -> str:
    if name.endswith((".yaml", ".yml")):
        import yaml

        return str(yaml.safe_dump(schema, sort_keys=False, allow_unicode=True, width=100))
    return msgspec.json.format(msgspec.json.encode(schema), indent=2).decode() + "\n"


CONTRACTS = {"events.schema.json": events_schema, "openapi.yaml": openapi}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in CONTRACTS.items():
        path = directory / name
        path.write_text(render(name, make()))
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("proto")
    for p in write(target):
        print(f"wrote {p}")
