"""docker-compose.yml and the service entry points, checked without a Docker engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DURABLE_VARS = re.compile(r"DURABLE_[A-Z0-9_]+")


def _code_env_vars() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "durable").rglob("*.py"):
        found |= set(DURABLE_VARS.findall(path.read_text()))
    return found


def test_compose_file_is_valid_and_refers_to_real_things() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "kafka", "minio", "executor"} <= set(services)
    known = _code_env_vars()
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for var in service.get("environment", {}):
            if var.startswith("DURABLE_"):
                assert var in known, f"{name} sets {var}, which durable never reads"
        build = service.get("build")
        if build:
            dockerfile = ROOT / build["context"] / build["dockerfile"]
            assert dockerfile.exists(), dockerfile
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for source in line.split()[1:-1]:
                        assert (ROOT / source).exists(), (
                            f"{dockerfile.name} copies missing {source}"
                        )
    executor = services["executor"]["environment"]
    user, password = "durable", "durable"
    assert (
        executor["DURABLE_DATABASE_URL"] == f"postgresql://{user}:{password}@postgres:5432/durable"
    )
    pg = services["postgres"]["environment"]
    assert (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]) == (
        user,
        password,
        "durable",
    )
    assert (ROOT / executor["DURABLE_WORKFLOWS"].replace("/app/", "")).is_dir()


def test_the_service_entry_point_refuses_to_start_without_a_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "services" / "executor.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: set DURABLE_DATABASE_URL (postgresql://user:password@host/db)"
    )


def test_the_service_entry_point_runs_the_executor(database_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DURABLE_DATABASE_URL": database_url,
        "DURABLE_WORKFLOWS": str(ROOT / "examples"),
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "services" / "executor.py")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("durable up: executor ")
        assert "daily_sales@" in first and "warehouse_checks@" in first
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0


def test_compose_wires_the_executor_to_kafka_and_object_storage() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["executor"]["environment"]
    minio = compose["services"]["minio"]["environment"]
    assert env["DURABLE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["DURABLE_S3_ENDPOINT"] == "http://minio:9000"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
