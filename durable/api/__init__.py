"""The HTTP API (aiohttp)."""

from durable.api.app import create_app

__all__ = ["create_app"]
