"""Templates never inject: hostile values stay data wherever they land."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable.core.templates import TemplateError, render

HOSTILE = [
    "x; echo INJECTED",
    "$(echo INJECTED)",
    "`echo INJECTED`",
    "a\necho INJECTED",
    'it\'s "quoted"',
    "${params.other}",
    "| cat /etc/passwd",
    "&& echo INJECTED &",
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_shell_value_is_one_word_and_never_code(value: str) -> None:
    command = render("printf '%s|' ${params.name} end", {"params": {"name": value}}, "shell")
    out = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True)
    assert out.stdout == f"{value}|end|"
    assert "INJECTED\n" not in out.stdout


# lone surrogates cannot be a process argument at all (nor come from JSON params)
@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=40,
    )
)
def test_any_text_survives_the_shell_unchanged(value: str) -> None:
    command = render("printf '%s' ${v}", {"v": value}, "shell")
    out = subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=True)
    assert out.stdout == value.encode()


def test_values_as_text_and_json() -> None:
    values = {"params": {"n": 3, "regions": ["eu"], "none": None}, "run_id": "r1"}
    assert render("${run_id}/${params.n}/${params.regions}/${params.none}", values) == (
        'r1/3/["eu"]/'
    )


def test_url_values_are_encoded_but_a_leading_base_is_not() -> None:
    values = {"params": {"base": "https://h.example/api", "q": "a b&c=d/../x"}}
    assert render("${params.base}/items?q=${params.q}", values, "url") == (
        "https://h.example/api/items?q=a%20b%26c%3Dd%2F..%2Fx"
    )


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\x00"])
def test_header_values_cannot_break_lines(value: str) -> None:
    with pytest.raises(TemplateError, match="line break or NUL"):
        render("Bearer ${params.t}", {"params": {"t": value}}, "header")


def test_path_values_cannot_climb_out() -> None:
    assert render("/data/${params.d}", {"params": {"d": "2026-11-21"}}, "path") == (
        "/data/2026-11-21"
    )
    with pytest.raises(TemplateError, match=r"climbs out"):
        render("/data/${params.d}", {"params": {"d": "../../etc"}}, "path")


def test_an_unknown_name_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match=r"template \$\{params.nope\} names nothing"):
        render("echo ${params.nope}", {"params": {}})
