"""The browser libraries the console ships, pinned in ``vendor.json``.

There is no JavaScript build step: the console is plain ES modules, and the three
libraries it uses are the prebuilt files their npm packages publish, copied into
``static/vendor/`` and shipped inside the wheel (no CDN, no network at run time).
``vendor.json`` pins each one: npm package, version, the tarball's integrity, and the
SHA-256 of the copied file; ``tests/test_ui_assets.py`` fails when a committed file and
its pin drift apart.

``python -m durable.ui.vendor`` fetches the pinned tarballs again (``npm pack``, a
developer's machine with network), checks their integrity and rewrites the files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import msgspec

__all__ = ["VENDOR", "Vendored", "pins"]

HERE = Path(__file__).parent
VENDOR = HERE / "static" / "vendor"


class Vendored(msgspec.Struct, frozen=True, kw_only=True):
    package: str
    version: str
    integrity: str
    file: str
    """The file's path inside the npm tarball."""
    path: str
    """Where it is kept, under ``static/vendor/``."""
    license: str
    why: str
    sha256: str


def pins() -> list[Vendored]:
    return msgspec.json.decode((HERE / "vendor.json").read_bytes(), type=list[Vendored])


def _fetch(pin: Vendored, into: Path) -> bytes:
    spec = f"{pin.package}@{pin.version}"
    out = subprocess.run(
        ["npm", "pack", spec, "--silent"], cwd=into, check=True, capture_output=True, text=True
    )
    tarball = into / out.stdout.strip().splitlines()[-1]
    algorithm, _, expected = pin.integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{spec}: tarball integrity {digest} is not the pinned {expected}")
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(pin.file)
        if member is None:
            raise SystemExit(f"{spec}: no {pin.file} in the tarball")
        return member.read()


def main() -> None:
    updated = []
    with tempfile.TemporaryDirectory() as tmp:
        for pin in pins():
            data = _fetch(pin, Path(tmp))
            (VENDOR / pin.path).write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            updated.append({**msgspec.structs.asdict(pin), "sha256": sha})
            print(f"{pin.package}@{pin.version} -> static/vendor/{pin.path} ({len(data)} bytes)")
    (HERE / "vendor.json").write_text(json.dumps(updated, indent=2) + "\n")


if __name__ == "__main__":
    main()
