"""Workflow versions do not move: runs are pinned to them and databases keep them.

The expected hashes were computed on the code from before task specs became typed
(``PYTHONPATH=<that checkout> python -c 'from durable.workflows.loader import ...'``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from durable.core.spec import spec_from_json
from durable.workflows.loader import load_workflows
from durable.workflows.yaml import load_yaml_spec, spec_to_yaml

ROOT = Path(__file__).parent.parent
PINNED = {
    "examples/daily_sales.py": ("daily_sales", "eac9d05d486d"),
    "examples/warehouse_checks.yaml": ("warehouse_checks", "c60932cc4ae8"),
    "tests/golden/golden_retries.py": ("golden_retries", "deaf25de1f6d"),
    "tests/golden/golden_map.py": ("golden_map", "5d2a8aaa7cfa"),
    "tests/golden/golden_switch.yaml": ("golden_switch", "a2366addf532"),
    "tests/golden/golden_timeout.py": ("golden_timeout", "d673fcd289c0"),
    "tests/golden/golden_crash.py": ("golden_crash", "dbb409b24b9c"),
}


@pytest.mark.parametrize("path", sorted(PINNED))
def test_versions_of_unchanged_definitions_stay(path: str) -> None:
    name, version = PINNED[path]
    spec = load_workflows(ROOT / path).get(name).spec
    assert spec.version == version
    # the stored form decodes back to the same definition (JSON makes 60 of a float 60.0)
    again = spec_from_json(msgspec.json.encode(spec.to_dict()))
    assert again.to_dict() == spec.to_dict()


def test_show_prints_yaml_that_loads_back_to_the_same_version(tmp_path: Path) -> None:
    spec = load_workflows(ROOT / "examples/warehouse_checks.yaml").get("warehouse_checks").spec
    shown = tmp_path / "shown.yaml"
    shown.write_text(spec_to_yaml(spec).replace(f"version: {spec.version}\n", ""))
    assert load_yaml_spec(shown).version == spec.version
