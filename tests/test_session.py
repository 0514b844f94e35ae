"""The console's session over HTTP: login with a token into an HttpOnly SameSite cookie,
the CSRF check of a session's unsafe requests, logout, revocation; and the console's
files served by the same application."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp

from durable.ui import STATIC
from tests.test_api import Api, api

__all__ = ["api"]


async def _session(url: str, token: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientResponse]:
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    response = await browser.post(f"{url}/api/v1/session", json={"token": token})
    await response.read()
    return browser, response


async def test_a_wrong_token_logs_nobody_in(api: Api) -> None:
    browser, response = await _session(api.url, "dtk_0123456789ab_" + "x" * 40)
    async with browser:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert "durable_session" not in response.cookies
        async with browser.get(f"{api.url}/api/v1/runs") as listed:
            assert listed.status == 401


async def test_the_session_cookie_carries_the_token_and_its_scopes(api: Api) -> None:
    browser, response = await _session(api.url, api.tokens["operate"])
    async with browser:
        assert response.status == 200
        session = response.cookies["durable_session"]
        assert session["httponly"] is True
        assert session["samesite"] == "Strict"
        assert session["path"] == "/"
        body = json.loads(await response.text())
        assert body["scopes"] == ["operate"] and body["name"] == "test-operate"
        assert response.cookies["durable_csrf"].value == body["csrf"]
        async with browser.get(f"{api.url}/api/v1/session") as me:
            assert me.status == 200 and (await me.json())["name"] == "test-operate"
        async with browser.post(f"{api.url}/api/v1/workflows/quick/runs", json={}) as refused:
            assert refused.status == 403  # no CSRF header: refused before the scope is read
            assert "CSRF" in (await refused.json())["title"]
        csrf = {"X-CSRF-Token": body["csrf"]}
        async with browser.post(
            f"{api.url}/api/v1/workflows/quick/runs", json={}, headers=csrf
        ) as scoped:
            assert scoped.status == 403
            assert (await scoped.json())["title"] == "insufficient scope"
        status, started = await api.call("POST", "/api/v1/workflows/slow/runs", json={})
        assert status == 202
        cancel = f"{api.url}/api/v1/runs/{started['run_id']}/cancel"
        async with browser.post(cancel, json={}) as forged:  # what another site could send
            assert forged.status == 403
        async with browser.post(cancel, json={}, headers={"X-CSRF-Token": "guess"}) as wrong:
            assert wrong.status == 403
        _, run = await api.call("GET", f"/api/v1/runs/{started['run_id']}", scope="read")
        assert run["status"] != "cancelled"
        async with browser.post(cancel, json={}, headers=csrf) as done:
            assert done.status == 200 and (await done.json())["status"] == "cancelled"


async def test_logout_and_revocation_end_the_session(api: Api) -> None:
    status, made = await api.call(
        "POST", "/api/v1/tokens", json={"name": "ui-session", "scopes": ["read"]}
    )
    assert status == 201
    browser, _ = await _session(api.url, made["token"])
    async with browser:
        async with browser.get(f"{api.url}/api/v1/runs") as ok:
            assert ok.status == 200
        await api.call("DELETE", f"/api/v1/tokens/{made['token_id']}")
        async with browser.get(f"{api.url}/api/v1/runs") as revoked:
            assert revoked.status == 401
    browser, _ = await _session(api.url, api.tokens["read"])
    async with browser:
        async with browser.delete(f"{api.url}/api/v1/session") as out:
            assert out.status == 204
        async with browser.get(f"{api.url}/api/v1/runs") as after:
            assert after.status == 401


async def test_the_console_is_served_with_its_files(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api.url}/", allow_redirects=False) as home:
            assert home.status == 302 and home.headers["Location"] == "/ui/"
        async with http.get(f"{api.url}/ui/runs/some-run?task=x") as page:
            assert page.status == 200 and page.content_type == "text/html"
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            shell = await page.text()
        for asset in ("/assets/app.js", "/assets/style.css", "/assets/vendor/dagre.min.js"):
            assert asset in shell or asset == "/assets/app.js"
            async with http.get(f"{api.url}{asset}") as served:
                assert served.status == 200
                assert (
                    hashlib.sha256(await served.read()).digest()
                    == hashlib.sha256(
                        (STATIC / asset.removeprefix("/assets/")).read_bytes()
                    ).digest()
                )
        async with http.get(f"{api.url}/assets/../__init__.py") as escape:
            assert escape.status in (403, 404)


def test_the_shell_loads_nothing_from_the_network() -> None:
    for path in Path(STATIC).rglob("*"):
        if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
            text = path.read_text()
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path
            assert "https://" not in text, path
