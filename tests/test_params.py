"""Strict typed params: JSON values validated without conversion, text parsed strictly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable.core.params import ParamError, parse_text_params, validate_params
from durable.core.spec import DefinitionError, ParamSpec

SPECS = {
    "date": ParamSpec(type="date", required=True),
    "count": ParamSpec(type="int", default=1),
    "ratio": ParamSpec(type="float", default=0.5),
    "region": ParamSpec(type="str", default="eu"),
    "dry": ParamSpec(type="bool", default=False),
    "extra": ParamSpec(type="json", default=None),
}


def test_valid_json_values_are_kept_and_defaults_filled() -> None:
    got = validate_params(SPECS, {"date": "2026-11-21", "count": 3, "ratio": 2, "extra": [1]})
    assert got == {
        "date": "2026-11-21",
        "count": 3,
        "ratio": 2.0,
        "region": "eu",
        "dry": False,
        "extra": [1],
    }
    assert isinstance(got["ratio"], float)


@pytest.mark.parametrize(
    ("name", "value", "expected", "shown"),
    [
        ("date", 20261121, "date", "20261121 (an integer)"),
        ("date", "20261121", "date", '"20261121" (a string)'),
        ("date", "2026-13-01", "date", '"2026-13-01" (a string)'),
        ("count", 1.9, "int", "1.9 (a number)"),
        ("count", "7", "int", '"7" (a string)'),
        ("count", True, "int", "true (a boolean)"),
        ("region", {"name": "eu"}, "str", '{"name":"eu"} (an object)'),
        ("region", None, "str", "null (null)"),
        ("region", 7, "str", "7 (an integer)"),
        ("ratio", True, "float", "true (a boolean)"),
        ("ratio", "0.5", "float", '"0.5" (a string)'),
        ("dry", "true", "bool", '"true" (a string)'),
        ("dry", 1, "bool", "1 (an integer)"),
    ],
)
def test_wrong_json_types_are_refused_naming_field_type_and_value(
    name: str, value: Any, expected: str, shown: str
) -> None:
    given = {"date": "2026-11-21", name: value}
    with pytest.raises(ParamError) as info:
        validate_params(SPECS, given, where="POST /workflows/w/runs")
    err = info.value
    assert (err.name, err.expected, err.value) == (name, expected, value)
    assert f"param {name!r}: expected {expected}, got {shown}" in str(err)
    assert str(err).startswith("POST /workflows/w/runs: ")
    assert err.hint


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("count", "7", 7),
        ("count", "-3", -3),
        ("ratio", "1.5", 1.5),
        ("ratio", "2", 2.0),
        ("dry", "true", True),
        ("dry", "No", False),
        ("date", "2026-11-21", "2026-11-21"),
        ("region", "x; echo $(id)", "x; echo $(id)"),
        ("extra", '{"a": 1}', {"a": 1}),
    ],
)
def test_text_is_parsed(name: str, text: str, value: Any) -> None:
    got = parse_text_params(SPECS, {"date": "2026-11-21", name: text})
    assert got[name] == value
    assert type(got[name]) is type(value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("count", "1.9"),
        ("count", "seven"),
        ("count", ""),
        ("ratio", "nan"),
        ("ratio", "inf"),
        ("dry", "maybe"),
        ("date", "20261121"),
        ("date", "21/11/2026"),
        ("extra", "{not json"),
    ],
)
def test_bad_text_is_refused(name: str, text: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_text_params(SPECS, {"date": "2026-11-21", name: text}, where="--param")
    assert info.value.name == name
    assert repr(text) in str(info.value)


def test_unknown_and_missing_params() -> None:
    with pytest.raises(DefinitionError, match="unknown param 'dat'"):
        validate_params(SPECS, {"dat": "2026-11-21"})
    with pytest.raises(DefinitionError, match="param 'date' is required"):
        parse_text_params(SPECS, {})


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_ints_roundtrip_both_doors(n: int) -> None:
    assert validate_params({"n": ParamSpec(type="int")}, {"n": n}) == {"n": n}
    assert parse_text_params({"n": ParamSpec(type="int")}, {"n": str(n)}) == {"n": n}


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_roundtrip_both_doors(x: float) -> None:
    assert validate_params({"x": ParamSpec(type="float")}, {"x": x}) == {"x": x}
    assert parse_text_params({"x": ParamSpec(type="float")}, {"x": repr(x)}) == {"x": x}


@given(st.dates())
def test_dates_roundtrip_both_doors(d: Any) -> None:
    iso = d.isoformat()
    assert validate_params({"d": ParamSpec(type="date")}, {"d": iso}) == {"d": iso}
    assert parse_text_params({"d": ParamSpec(type="date")}, {"d": iso}) == {"d": iso}
