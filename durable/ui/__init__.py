"""The web console: static files (HTML, CSS, ES modules) that the API application serves.

The console is a client of the HTTP API like any other: every view reads and every
action acts through ``/api/v1`` from the browser, with the session cookie the login
sets (see :mod:`durable.api.session`). This package imports nothing of durable, so
there is no second path to the database. Its pages are bookmarkable URLs under ``/ui/``;
each serves the same shell, and the shell's router draws the view.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["STATIC", "mount"]

STATIC = Path(__file__).parent / "static"
_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def mount(app: web.Application) -> None:
    """Serve the console on ``/`` and ``/ui/...``, its files on ``/assets/...``."""
    shell = (STATIC / "index.html").read_bytes()

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=shell,
            content_type="text/html",
            headers={
                "Content-Security-Policy": _POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )

    async def home(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    app.router.add_get("/", home)
    app.router.add_get("/ui", home)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/{view:.*}", page)
    app.router.add_static("/assets/", STATIC, show_index=False, append_version=False)
