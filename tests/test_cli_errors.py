"""A usage error on the command line is one line naming the problem and where to look."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import durable


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("runs", "--limit", "abc"), "error: Invalid value for '--limit': 'abc' is not a valid"),
        (("nosuch",), "error: No such command 'nosuch'. (see 'durable --help')"),
        (("show",), "error: Missing argument 'WORKFLOW'. (see 'durable show --help')"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], line: str, tmp_path: Path) -> None:
    result = durable(*args, home=tmp_path / ".durable")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(line)
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr


def test_help_still_works(tmp_path: Path) -> None:
    result = durable("--help", home=tmp_path / ".durable")
    assert result.returncode == 0
    assert "Usage: durable" in result.stdout
