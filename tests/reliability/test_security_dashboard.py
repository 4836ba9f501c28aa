"""Cross-site request forgery against a logged-in dashboard, and login guessing, on a running daemon.

A logged-in session cookie is replayed with every way a forged form could arrive: from a
foreign Origin, without the CSRF token, with another session's token, with the token in the
query string of a POST or in a GET, from a read-only session. Each must answer 403 (405 for
the GET: the actions have no GET route at all) and change nothing in the store; the one
well-formed same-origin POST goes through (the control that the state check sees a change).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.reliability.test_security import ADMIN_TOKEN, PUBLIC_URL, READ_TOKEN, World, running

pytestmark = pytest.mark.asyncio(loop_scope="module")

FOREIGN = "https://evil.example.net"
ELSE = "http://127.0.0.1:1"  # same host, another port: another origin


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running(tmp_path_factory.mktemp("security-dash")) as w:
        yield w


async def post(
    w: World, path: str, cookie: str, data: dict[str, str], origin: str | None = None
) -> tuple[int, str]:
    """A form POST as a browser sends it, with the session cookie and an Origin."""
    headers = {"Cookie": cookie}
    if origin is not None:
        headers["Origin"] = origin
    async with w.http.post(w.url + path, data=data, headers=headers, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_forged_dashboard_posts_are_refused_and_change_nothing(world: World) -> None:
    w = world
    cookie, csrf = await w.login(ADMIN_TOKEN)
    other_cookie, other_csrf = await w.login(ADMIN_TOKEN)  # a second browser, same person
    reader_cookie, reader_csrf = await w.login(READ_TOKEN)
    _, made = await asyncio.gather(w.settled(), w.rows("SELECT id FROM silences"))
    assert made == []
    async with w.http.post(
        w.url + "/api/v1/silences",
        json={"name": "dash", "match": {"sites": ["main-street"]}, "duration": "1h"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as r:
        assert r.status == 201
        silence = (await r.json())["id"]
    ack = f"/ui/incidents/{w.ref}/ack"
    note = f"/ui/incidents/{w.ref}/note"
    expire = f"/ui/silences/{silence}/expire"
    before = await w.settled()

    attempts: list[tuple[str, str, str, dict[str, str], str | None]] = []
    for path in (ack, note, expire):
        data = {"text": "forged note"} if path == note else {}
        attempts += [
            ("foreign Origin, no token", path, cookie, data, FOREIGN),
            ("foreign Origin with the token", path, cookie, {**data, "csrf": csrf}, FOREIGN),
            ("Origin: null, no token", path, cookie, data, "null"),
            ("Origin with our host on another port", path, cookie, {**data, "csrf": csrf}, ELSE),
            ("no token", path, cookie, data, None),
            ("empty token", path, cookie, {**data, "csrf": ""}, PUBLIC_URL),
            ("another session's token", path, cookie, {**data, "csrf": other_csrf}, None),
            ("token of another session's cookie", path, other_cookie, {**data, "csrf": csrf}, None),
            ("read-only session", path, reader_cookie, {**data, "csrf": reader_csrf}, None),
        ]
    attempts.append(("logout without token", "/logout", cookie, {}, None))
    attempts.append(("logout from a foreign Origin", "/logout", cookie, {"csrf": csrf}, FOREIGN))
    wrong = []
    for what, path, c, data, origin in attempts:
        status, text = await post(w, path, c, data, origin)
        if status != 403:
            wrong.append(f"{what}: POST {path} -> {status} {text[:120]}")
        if await w.state() != before:
            wrong.append(f"{what}: POST {path} CHANGED STATE")
            before = await w.settled()
    # The token in the query string of a POST is not read; a GET has no route at all.
    for path in (ack, expire):
        status, _ = await post(w, f"{path}?csrf={csrf}", cookie, {})
        assert status == 403, path
        async with w.http.get(
            f"{w.url}{path}?csrf={csrf}", headers={"Cookie": cookie}, allow_redirects=False
        ) as r:
            assert r.status == 405, path
    assert not wrong, "\n".join(wrong)
    assert await w.state() == before
    assert await w.incident_state() == "triggered"

    # The session survived the forged logouts, and a real same-origin form works (control).
    status, _ = await post(w, ack, cookie, {"csrf": csrf}, PUBLIC_URL)
    assert status == 303
    assert await w.incident_state() == "acknowledged"
    status, _ = await post(w, expire, cookie, {"csrf": csrf}, w.url)  # the Host seen: same origin
    assert status == 303
    [(expired,)] = await w.rows("SELECT expired_at FROM silences WHERE id=?", silence)
    assert expired is not None


async def test_login_forgery_and_guessing(world: World) -> None:
    w = world
    async with w.http.get(w.url + "/login") as r:
        login_cookie = f"nocd_login={r.cookies['nocd_login'].value}"
        token = r.cookies["nocd_login"].value

    async def login(data: dict[str, str], cookie: str, origin: str | None = None) -> int:
        headers = {"Cookie": cookie}
        if origin:
            headers["Origin"] = origin
        async with w.http.post(
            w.url + "/login", data=data, headers=headers, allow_redirects=False
        ) as r:
            return r.status

    # Login CSRF (logging a victim into the attacker's session) is refused.
    assert await login({"csrf": token, "token": ADMIN_TOKEN}, "") == 403
    assert await login({"csrf": "x" * 32, "token": ADMIN_TOKEN}, login_cookie) == 403
    assert await login({"csrf": token, "token": ADMIN_TOKEN}, login_cookie, FOREIGN) == 403
    # Guessing: every wrong token is refused and logged with the caller; there is no lock-out
    # (one attacker must not lock operators out mid-incident): tokens must be long and random.
    guesses = 50
    statuses = {
        await login({"csrf": token, "token": f"guess-{i:04d}-{ADMIN_TOKEN[:-4]}"}, login_cookie)
        for i in range(guesses)
    }
    assert statuses == {401}
    refused = [e for e in w.logs if e.get("event") == "dashboard login refused"]
    assert len(refused) >= guesses and all(e["remote"] == "127.0.0.1" for e in refused)
    assert await login({"csrf": token, "token": ADMIN_TOKEN}, login_cookie, PUBLIC_URL) == 303
    # A session id chosen by an attacker is never adopted: login issues a fresh one.
    chosen = "nocd_session=attacker-chosen-session-id-0000000000"
    async with w.http.post(
        w.url + "/login",
        data={"csrf": token, "token": ADMIN_TOKEN},
        headers={"Cookie": f"{login_cookie}; {chosen}"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.cookies["nocd_session"].value not in chosen


async def test_head_on_the_event_stream_does_not_desync_the_connection(world: World) -> None:
    """Regression: HEAD /ui/events used to stream event bytes after a bodiless response."""
    cookie, _ = await world.login(READ_TOKEN)
    conn = aiohttp.TCPConnector(limit=1)  # one keep-alive connection for both requests
    async with aiohttp.ClientSession(connector=conn) as http:
        async with http.head(world.url + "/ui/events", headers={"Cookie": cookie}) as r:
            assert r.status == 405
        async with http.get(world.url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
