"""The console's vendored libraries are exactly the pinned npm files (no drift), each
with its licence, and every file the console loads exists."""

from __future__ import annotations

import hashlib
import re

import pytest

from durable.ui import STATIC
from durable.ui.vendor import VENDOR, pins


@pytest.mark.parametrize("pin", pins(), ids=lambda p: p.package)
def test_a_vendored_file_is_its_pinned_npm_file(pin) -> None:  # type: ignore[no-untyped-def]
    data = (VENDOR / pin.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == pin.sha256, (
        f"static/vendor/{pin.path} is not {pin.package}@{pin.version}'s {pin.file}; "
        "run `python -m durable.ui.vendor` to fetch the pinned files again"
    )
    assert pin.integrity.startswith("sha512-")
    assert any(VENDOR.glob("LICENSE.*"))


def test_every_vendored_file_is_pinned() -> None:
    pinned = {p.path for p in pins()}
    present = {p.name for p in VENDOR.iterdir() if not p.name.startswith("LICENSE.")}
    assert present == pinned


def test_every_module_and_asset_the_console_loads_exists() -> None:
    shell = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="/assets/([^"]+)"', shell):
        assert (STATIC / ref).is_file(), ref
    for module in STATIC.rglob("*.js"):
        if "vendor" in module.parts:
            continue
        for ref in re.findall(r'from "(\.{1,2}/[^"]+)"', module.read_text()):
            assert (module.parent / ref).resolve().is_file(), f"{module.name} imports {ref}"
