"""Python callables of the golden YAML workflows."""

from __future__ import annotations

from typing import Any


def pick(ctx: Any) -> dict[str, str]:
    return {"route": str(ctx.params["route"])}
