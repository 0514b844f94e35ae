"""Property-based fuzzing of the running service from its OpenAPI description
(schemathesis): no answer is a 5xx, every status code and body matches the description."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import start_service

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
async def test_the_api_survives_fuzzing_from_its_openapi_description(
    database_url: str, tmp_path: Path
) -> None:
    service = await asyncio.to_thread(start_service, database_url, ROOT / "examples")
    try:
        examples = os.environ.get("DURABLE_FUZZ_EXAMPLES", "25")
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(ROOT / "proto" / "openapi.yaml"),
            "--url",
            service.url,
            "--header",
            f"Authorization: Bearer {service.token}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--max-examples",
            examples,
            "--request-timeout",
            "30",
            "--no-color",
        ]
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, cwd=tmp_path, timeout=600
        )
    finally:
        await asyncio.to_thread(service.stop)
    summary = result.stdout[result.stdout.find("SUMMARY") :]
    print(summary)
    assert result.returncode == 0, result.stdout[-20000:] + "".join(service.log)[-5000:]
    assert "generated" in summary and " 0 passed" not in summary
    unexpected = [line for line in service.log if "unexpected error" in line]
    assert not unexpected, "".join(service.log)
