"""proto/ is generated from the code; this fails when the two drift apart."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

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


def test_the_openapi_describes_every_route_hooks_included() -> None:
    from durable.api.routes import ROUTES

    spec = yaml.safe_load((ROOT / "proto" / "openapi.yaml").read_text())
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert described == {(r.path, r.method.lower()) for r in ROUTES}
    hook = spec["paths"]["/api/v1/hooks/{workflow}"]["post"]
    headers = {p["name"] for p in hook["parameters"] if p["in"] == "header"}
    assert headers == {"X-Durable-Signature", "Idempotency-Key"}
    assert hook["security"] == [{"hmac": []}, {"bearer": ["trigger"]}]
    assert {"202", "200", "401", "409"} <= set(hook["responses"])
    s3 = spec["paths"]["/api/v1/hooks/{workflow}/s3-events"]["post"]
    assert s3["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/S3EventNotification"
    }
