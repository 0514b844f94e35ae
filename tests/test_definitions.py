"""Workflow definitions: Python and YAML give one model; validation errors are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from durable import Param, Workflow
from durable.cli import main
from durable.core.spec import DefinitionError, coerce_params
from durable.workflows import load_workflows

MODULE = """
from durable import Workflow, Param

def fetch(ctx):
    return {"rows": 1}

def transform(fetch):
    return fetch

wf = Workflow("etl", params={"date": Param("date", required=True)}, max_active_runs=3)
f = wf.task(fetch, retries=3, timeout=60)
t = wf.task(transform)
f >> t
wf.shell("export", "echo ${params.date}", after=[t])
"""

YAML = """
workflow: etl
params:
  date: {type: date, required: true}
max_active_runs: 3
tasks:
  fetch:
    python: etl_code:fetch
    retries: 3
    timeout: 60
  transform:
    python: etl_code:transform
    after: fetch
  export:
    shell: "echo ${params.date}"
    after: [transform]
"""


def test_python_and_yaml_build_the_same_definition(tmp_path: Path) -> None:
    (tmp_path / "py").mkdir()
    (tmp_path / "yaml").mkdir()
    (tmp_path / "py" / "etl_code.py").write_text(MODULE)
    (tmp_path / "yaml" / "etl.yaml").write_text(YAML)
    (tmp_path / "yaml" / "etl_code.py").write_text(
        MODULE.replace('Workflow("etl"', 'Workflow("etl_unused"')
    )
    from_python = load_workflows(tmp_path / "py").get("etl").spec
    from_yaml = load_workflows(tmp_path / "yaml" / "etl.yaml").get("etl").spec
    assert from_python.to_dict() == from_yaml.to_dict()
    assert from_python.version == from_yaml.version
    assert [t.name for t in from_python.tasks] == ["fetch", "transform", "export"]


def test_the_version_changes_with_the_definition() -> None:
    a = Workflow("w")
    a.shell("s", "echo 1")
    b = Workflow("w")
    b.shell("s", "echo 2")
    assert a.spec().version != b.spec().version
    c = Workflow("w")
    c.shell("s", "echo 1")
    assert a.spec().version == c.spec().version


def _error(wf: Workflow) -> str:
    with pytest.raises(DefinitionError) as info:
        wf.spec()
    return str(info.value)


def test_validation_errors_name_what_is_wrong() -> None:
    cyc = Workflow("cyc")
    a, b, c = (cyc.shell(n, "true") for n in "abc")
    a >> b >> c
    c >> a
    assert "workflow 'cyc': cycle: a -> c -> b -> a" in _error(cyc)

    unknown = Workflow("unknown")
    unknown.shell("a", "true", after=["ghost"])
    assert "task 'a' depends on unknown task 'ghost' (tasks are: a)" in _error(unknown)

    dup = Workflow("dup")
    dup.shell("a", "true")
    with pytest.raises(DefinitionError, match="task 'a' is declared twice"):
        dup.shell("a", "false")

    bad_default = Workflow("bd", params={"n": Param("int", default="many")})
    bad_default.shell("a", "true")
    assert "param 'n': default param 'n': 'many' is not a valid int" in _error(bad_default)

    route = Workflow("route")
    x = route.shell("x", "true")
    with pytest.raises(DefinitionError, match="switch 'pick' routes to unknown task 'nowhere'"):
        route.switch(cases={"a": ["nowhere"]}, after=[x], name="pick")(lambda: "a")


def test_bad_params_are_refused_before_anything_runs() -> None:
    specs = {"date": Param("date", required=True), "n": Param("int", default=1)}
    assert coerce_params(specs, {"date": "2026-11-21", "n": "7"}) == {"date": "2026-11-21", "n": 7}
    with pytest.raises(DefinitionError, match="param 'date' is required"):
        coerce_params(specs, {})
    with pytest.raises(
        DefinitionError, match=r"'2026-13-01' is not a valid date \(dates are YYYY-MM-DD\)"
    ):
        coerce_params(specs, {"date": "2026-13-01"})
    with pytest.raises(DefinitionError, match="unknown param 'dat'"):
        coerce_params(specs, {"dat": "2026-11-21"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workflow: w\ntasks:\n  a:\n    shell: [unclosed\n", "w.yaml:5: invalid YAML"),
        (
            "workflow: w\ntasks:\n  a:\n    shel: echo\n",
            "w.yaml:4: task 'a' must have exactly one type key (found none)",
        ),
        (
            "workflow: w\ntasks:\n  a:\n    shell: echo\n    retires: 3\n",
            "w.yaml:4: task 'a': unknown option 'retires' for a shell task",
        ),
        (
            "workflow: w\ntasks:\n  a:\n    flink: job.py\n",
            "task types: python, shell, http, sql, switch, map, sleep, noop, job, spark, dbt, "
            "sensor",
        ),
        (
            "workflow: w\ntasks:\n  a:\n    shell: echo\n    after: [b]\n",
            "task 'a' depends on unknown task 'b'",
        ),
        ("workflow: w\nowner: data-team\ntasks: {}\n", "w.yaml:1: unknown key 'owner'"),
        (
            "workflow: w\nschedule: daily\ntasks:\n  a:\n    shell: echo\n",
            "w.yaml: 'daily' is not a cron expression (five fields: minute hour day-of-month",
        ),
        (
            "workflow: w\nschedule: {cron: '0 2 * * *', timezone: Mars/Olympus}\n"
            "tasks:\n  a:\n    shell: echo\n",
            "unknown time zone 'Mars/Olympus' (an IANA name such as Europe/Paris",
        ),
        (
            "workflow: w\ntasks:\n  a:\n    python: nomodule\n",
            "callable 'nomodule' must look like module:function",
        ),
    ],
)
def test_yaml_errors_name_file_line_and_option(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError) as info:
        registry = load_workflows(path)
        registry.get("w").callable_for("a")  # imports are checked when first needed
    assert message in str(info.value), str(info.value)


def test_a_python_file_that_fails_to_import_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken_wf.py"
    path.write_text(
        "from durable import Workflow\n\nwf = Workflow('b')\nraise RuntimeError('oops')\n"
    )
    with pytest.raises(DefinitionError, match=r"broken_wf\.py:4: RuntimeError: oops"):
        load_workflows(path)


def test_show_graph_and_versions_from_the_cli(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "wfs"
    folder.mkdir()
    (folder / "etl_code.py").write_text(MODULE)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(
            main, ["--database-url", database_url, *args, "--workflows", str(folder)]
        )
        assert result.exit_code == 0, result.output
        return result.output

    shown = cli("show", "etl")
    assert "workflow: etl" in shown and "python: etl_code:fetch" in shown
    assert "shell: echo ${params.date}" in shown
    tree = cli("graph", "etl")
    assert "fetch (python)" in tree and "└── transform (python)" in tree
    assert "export (shell)" in tree
    assert cli("graph", "etl", "--format", "dot").splitlines()[-3:] == [
        '  "fetch" -> "transform";',
        '  "transform" -> "export";',
        "}",
    ]
    assert "fetch --> transform" in cli("graph", "etl", "--format", "mermaid")
    first = cli("versions", "etl").split()[0]
    (folder / "etl_code.py").write_text(
        MODULE.replace("echo ${params.date}", "echo day=${params.date}")
    )
    listing = cli("versions", "etl").splitlines()
    assert len(listing) == 2 and listing[0].startswith(first)
    second = listing[1].split()[0]
    diff = cli("versions", "etl", "--diff", first, second)
    assert diff.strip() == (
        "~ task export.config: {'command': 'echo ${params.date}'} -> "
        "{'command': 'echo day=${params.date}'}"
    )
