"""The layers, checked by package path: imports point downward only.

core (pure) <- store <- application <- runtime <- interfaces (api, cli, client, contracts).
The web console (``ui``) imports nothing of durable: it reads and acts only through the
HTTP API, from the browser; the API application serves its files.
``workflows`` (authoring: the Python and YAML definitions, the task context) sits on the
core. ``telemetry`` (the process's OpenTelemetry metrics) sits on the core and the store's
protocols, beside the application: both the runtime (the executor counts runs, the Kafka
trigger its lag) and the API (HTTP durations, ``/metrics``) count into it, and the API
may not import the runtime. The store does not import it either: its group commit tells a
``CommitObserver`` it is handed. No module outside ``durable/store/`` imports asyncpg or holds a SQL statement,
except the SQL task runner, whose SQL is its users'.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "durable"

# What each package may import from durable (its own package always).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "workflows": {"core"},
    "store": {"core"},
    "application": {"core", "store", "workflows"},
    "telemetry": {"core", "store"},
    "runtime": {"core", "store", "application", "workflows", "telemetry"},
    "api": {"core", "store", "application", "workflows", "ui", "telemetry"},
    "ui": set(),
    "cli": {"core", "store", "application", "workflows", "runtime", "api", "client", "telemetry"},
    "client": {"core", "api"},
    "contracts": {"core", "api"},
    "__init__": {"core", "workflows"},
    "__main__": {"cli"},
}
# Impure modules the pure core must not import (stdlib and third party).
IMPURE = {
    "asyncio", "asyncpg", "aiohttp", "aiokafka", "aiobotocore", "socket", "subprocess",
    "random", "secrets", "time", "uuid", "threading", "os", "shutil", "tempfile",
}  # fmt: skip
CORE_THIRD_PARTY = {"msgspec", "croniter"}
# The SQL task runner runs its users' statements on their connections.
SQL_ALLOWED = {"runtime/tasks/sql.py"}
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX|DATABASE)|pg_advisory|LISTEN\s|NOTIFY\s)",
    re.IGNORECASE | re.DOTALL,
)


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py"))


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    package = _package(path)
    assert package in ALLOWED, f"durable/{path.relative_to(ROOT)}: which layer is it in?"
    for name in _imports(path):
        if name == "durable" or not name.startswith("durable."):
            continue
        target = name.split(".")[1]
        assert target == package or target in ALLOWED[package], (
            f"durable/{path.relative_to(ROOT)} imports {name}: "
            f"{package} may import only {sorted(ALLOWED[package]) or 'itself'}"
        )


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _package(p) == "core"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_core_is_pure(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "durable":
            continue
        assert top not in IMPURE, f"durable/{path.relative_to(ROOT)} imports {name}: impure"
        assert top in sys.stdlib_module_names or top in CORE_THIRD_PARTY, (
            f"durable/{path.relative_to(ROOT)} imports {name}: the core may use the "
            f"standard library, {', '.join(sorted(CORE_THIRD_PARTY))} and itself"
        )


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _package(p) != "store"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_store_speaks_sql(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in SQL_ALLOWED:
        return
    assert not [n for n in _imports(path) if n.split(".")[0] == "asyncpg"], (
        f"durable/{rel} imports asyncpg: only durable/store/ talks to PostgreSQL"
    )
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue  # prose may say LISTEN or SELECT
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not SQL.search(node.value), (
                f"durable/{rel}:{node.lineno} holds SQL: move it into durable/store/"
            )
