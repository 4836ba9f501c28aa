"""Dashboard sessions, CSRF and scopes, the SSE stream, and the public status page, over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from nocd.configload import load_text
from nocd.daemon import Daemon
from tests.integration.api_world import (
    READ_TOKEN,
    WRITE_TOKEN,
    World,
    running_world,
    start_world,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(tmp_path_factory, "dash") as w:
        yield w


def browser() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies from an IP-address host (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(s: aiohttp.ClientSession, url: str, token: str) -> aiohttp.ClientResponse:
    async with s.get(url + "/login") as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert csrf
    return await s.post(
        url + "/login", data={"csrf": csrf.group(1), "token": token}, allow_redirects=False
    )


async def page_csrf(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(url + "/") as r:
        assert r.status == 200
        found = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert found
    return found.group(1)


async def state_of(world: World, code: str) -> str:
    _, body = await world.call("GET", f"/api/v1/incidents/{code}")
    return str(body["state"])


async def test_no_session_redirects_to_login(world: World) -> None:
    async with browser() as s:
        for path in ("/", "/ui/events"):
            async with s.get(world.url + path, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (303, "/login")
        async with s.post(world.url + "/ui/incidents/1/ack", allow_redirects=False) as r:
            assert r.status == 303


async def test_login_cookie_flags_and_refusals(world: World) -> None:
    async with browser() as s:
        r = await login(s, world.url, "not-a-token")
        assert r.status == 401 and "not valid" in await r.text()
        r = await login(s, world.url, WRITE_TOKEN)
        assert (r.status, r.headers["Location"]) == (303, "/")
        raw = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("nocd_session="))
        cookie = SimpleCookie(raw)["nocd_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain-http loopback: a Secure cookie would never return
        assert WRITE_TOKEN not in raw  # the cookie is an opaque id, not the token
        async with s.get(world.url + "/") as page:
            html = await page.text()
            assert "alice-ops" in html and "Main Street" in html
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    async with browser() as s:
        async with s.post(world.url + "/login", data={"csrf": "forged", "token": WRITE_TOKEN}) as r:
            assert r.status == 403  # no login CSRF cookie: refused
        assert not [c for c in s.cookie_jar if c.key == "nocd_session"]


async def test_actions_need_csrf_and_write_scope_then_go_through_the_actions(
    world: World,
) -> None:
    inc = await world.wait_for_incident()
    code = inc["code"]
    async with browser() as reader:
        await login(reader, world.url, READ_TOKEN)
        csrf = await page_csrf(reader, world.url)
        async with reader.post(
            f"{world.url}/ui/incidents/{code}/ack", data={"csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 403 and "write scope" in await r.text()
    assert await state_of(world, code) == "triggered"
    async with browser() as s:
        await login(s, world.url, WRITE_TOKEN)
        csrf = await page_csrf(s, world.url)
        for data in ({}, {"csrf": "wrong"}, {"csrf": csrf[:-1]}):
            async with s.post(
                f"{world.url}/ui/incidents/{code}/ack", data=data, allow_redirects=False
            ) as r:
                assert r.status == 403
        assert await state_of(world, code) == "triggered"
        async with s.post(
            f"{world.url}/ui/incidents/{code}/ack", data={"csrf": csrf}, allow_redirects=False
        ) as r:
            assert (r.status, r.headers["Location"]) == (303, f"/#incident-{code}")
        assert await state_of(world, code) == "acknowledged"
        async with s.post(
            f"{world.url}/ui/incidents/{code}/note",
            data={"csrf": csrf, "text": "remedy: <b>reseated</b> the cable"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with s.get(world.url + "/") as page:
            html = await page.text()
        assert "acknowledged by alice-ops via dashboard" in html
        assert "&lt;b&gt;reseated&lt;/b&gt;" in html and "<b>reseated" not in html  # escaped
        async with s.post(
            f"{world.url}/ui/incidents/NOSUCH/ack", data={"csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 404
        # Logging out ends the session server-side: the old cookie is worthless.
        old = {c.key: c.value for c in s.cookie_jar}["nocd_session"]
        async with s.post(world.url + "/logout", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
    async with browser() as replay:
        replay.cookie_jar.update_cookies({"nocd_session": old}, aiohttp.client.URL(world.url))
        async with replay.get(world.url + "/", allow_redirects=False) as r:
            assert r.status == 303


async def test_event_stream_pushes_the_panels(world: World) -> None:
    async with browser() as s:
        await login(s, world.url, READ_TOKEN)
        async with s.get(world.url + "/ui/events") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            event = b""
            while b"\n\n" not in event.split(b"retry: 2000\n\n", 1)[-1]:
                event += await r.content.readany()
        payload = event.decode().split("event: panels\ndata: ", 1)[1].split("\n\n", 1)[0]
        panels = json.loads(payload)
        assert set(panels) == {"summary", "sites", "incidents", "oncall", "maintenance"}
        assert 'id="site-main-street"' in panels["sites"]
        assert "Bob Example" in panels["oncall"] or "Alice Example" in panels["oncall"]


async def test_status_page_shows_public_maintenance_in_public_words(world: World) -> None:
    status, made = await world.call(
        "POST",
        "/api/v1/silences",
        body={
            "name": "pbx swap main-street",
            "match": {"sites": ["main-street"]},
            "duration": "1h",
            "comment": "Replacing the hosted voice PBX",
            "public": True,
        },
    )
    assert status == 201
    try:
        async with browser() as s, s.get(world.url + "/status") as r:
            html = await r.text()
        assert r.status == 200
        assert "Replacing the hosted voice PBX" in html
        assert 'data-state="maintenance"' in html and "Under maintenance" in html
        assert "Planned maintenance in progress" in html
        assert "pbx swap" not in html and "main-street" not in html  # internal names stay in
    finally:
        await world.call("POST", f"/api/v1/silences/{made['id']}/expire")


async def test_secure_cookie_behind_https_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_TEST_TOKEN", WRITE_TOKEN)
    cfg = load_text(
        "daemon: {public_url: 'https://noc.example.com'}\n"
        "api: {tokens: [{name: ops, token: '${NOCD_TEST_TOKEN}', scopes: [read]}]}\n",
        "t.yaml",
    )
    async with TestClient(TestServer(Daemon(cfg).build_app())) as client:
        r = await client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert csrf and "Secure" in r.headers["Set-Cookie"]
        # The client rightly keeps a Secure cookie off plain http; send it by hand.
        login_cookie = SimpleCookie(r.headers["Set-Cookie"])["nocd_login"].value
        r = await client.post(
            "/login",
            data={"csrf": csrf.group(1), "token": WRITE_TOKEN},
            headers={"Cookie": f"nocd_login={login_cookie}"},
            allow_redirects=False,
        )
        raw = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("nocd_session="))
        assert SimpleCookie(raw)["nocd_session"]["secure"]


async def test_stop_does_not_wait_for_a_connected_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await start_world(tmp_path, monkeypatch)
    stopped = False
    try:
        async with browser() as s:
            await login(s, w.url, READ_TOKEN)
            async with s.get(w.url + "/ui/events") as r:
                await r.content.readany()  # the stream is open
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                await asyncio.wait_for(w.daemon.stop(), 10)
                stopped = True
                assert loop.time() - t0 < 5  # not aiohttp's 60 s wait for open handlers
    finally:
        if not stopped:
            await w.daemon.stop()
        w.listener.close()
        await w.ari.cleanup()
