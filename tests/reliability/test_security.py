"""Every HTTP endpoint of a running daemon × every kind of credential: refused ones change nothing.

The endpoints are read from the daemon's own aiohttp router at test time, so a route added
later is covered without editing this file: under /api/ it is held to the token rules (read
scope for GET/HEAD, write scope for anything else); anywhere else it fails the test until it
is classified below as public, Twilio-signed or dashboard-session. Each request is followed
by a fingerprint of everything a request could change (incidents, timeline, silences,
tickets, pages, webhook replays, heartbeats, Alertmanager alerts); a refused request must
leave it identical, and each admin write must change it (the control that the fingerprint
sees the change). `NOCD_SECURITY_MATRIX=FILE` writes the matrix as Markdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import structlog
from aiohttp import web

from checks.heartbeat import book
from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from tests.fakes.twilio_fake import FakeTwilio
from tests.peers import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

PUBLIC_URL = "https://noc.example.com"
SID = "AC" + "0" * 31 + "5"
TWILIO_TOKEN = "security-twilio-token-0123456789"
READ_TOKEN = "sec-read-token-4f1c9a7e2b6d8035"
ADMIN_TOKEN = "sec-admin-token-9e2d7c4b1a6f3058"
ALICE = "+15550101"
HEARTBEAT = "backup-job"

# Reached without any credential, by design. Anything new outside /api/ must be added to
# one of these three sets (or the test fails): the allow-list is reviewed, not inferred.
PUBLIC = {
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/readyz"),
    ("HEAD", "/readyz"),
    ("GET", "/metrics"),  # Prometheus scrapes without auth; keep the listener private
    ("HEAD", "/metrics"),
    ("GET", "/status"),  # the public status page: public maintenance words only
    ("HEAD", "/status"),
    ("GET", "/login"),
    ("HEAD", "/login"),
    ("POST", "/login"),  # its own double-submit CSRF token, then an API token
    ("GET", "/api/v1/openapi.json"),  # describes the API, reveals no data
    ("HEAD", "/api/v1/openapi.json"),
    ("GET", "/static"),
    ("HEAD", "/static"),
}
# Authenticated by X-Twilio-Signature over the configured public URL, never by a token.
TWILIO = {
    ("POST", "/twilio/voice/{key}"),
    ("POST", "/twilio/gather/{key}"),
    ("POST", "/twilio/status/{key}"),
    ("POST", "/twilio/sms"),
}
# The dashboard: a session cookie from /login, plus the session's CSRF token on every POST.
SESSION = {
    ("GET", "/"),
    ("HEAD", "/"),
    ("POST", "/logout"),
    ("GET", "/ui/events"),  # no HEAD: see test_security_dashboard
    ("POST", "/ui/incidents/{ref}/{action}"),
    ("POST", "/ui/silences/{id}/expire"),
}
# How each credential is presented. A dashboard session cookie must not open the API
# (that would make the API forgeable cross-site), nor may a token in the query string.
CREDENTIALS = ("none", "wrong", "query", "admin-cookie", "read", "admin")
READ_METHODS = ("GET", "HEAD")


def config(tmp: Path, port: int, dead_port: int, public_url: str | None = PUBLIC_URL) -> str:
    """One site down (an incident pages Alice), a heartbeat check, an Alertmanager rule."""
    public = f"public_url: {public_url}" if public_url else ""
    return f"""
daemon:
  listen: 127.0.0.1:{port}
  {public}
  state_path: {tmp}/nocd.db
  log_format: json
  log_level: warning
  shutdown_grace: 1s
sites:
  main-street: {{name: Main Street, timezone: UTC}}
checks:
  - name: main-street-pbx
    type: tcp
    target: "127.0.0.1:{dead_port}"
    site: main-street
    interval: 1s
    timeout: 500ms
    retries: 1
    on_failure: critical
  - name: {HEARTBEAT}
    type: heartbeat
    period: 1h
    site: main-street
  - name: pbx-exporter-down
    type: alertmanager
    site: main-street
    matchers: ['alertname="TargetDown"']
api:
  tokens:
    - {{name: reader, token: "${{NOCD_SEC_READ_TOKEN}}", scopes: [read]}}
    - {{name: admin, token: "${{NOCD_SEC_ADMIN_TOKEN}}", scopes: [read, write]}}
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_SEC_TWILIO_SID}}
    auth_token: ${{NOCD_SEC_TWILIO_TOKEN}}
    from_number: "+15550100"
  people:
    alice: {{name: Alice Example, phone: "{ALICE}"}}
  escalation_policies:
    noc:
      steps:
        - {{people: [alice], channels: [voice, sms], wait: 1h}}
  routing:
    default: {{support_hours: "24x7", page_in_hours: true, escalation_policy: noc}}
  rate_limits: {{bundle_window: 0s}}
"""


@dataclass
class World:
    """The running daemon, the Twilio fake wired to it, and the daemon's captured log."""

    daemon: Daemon
    twilio: FakeTwilio
    url: str
    logs: list[MutableMapping[str, Any]]
    http: aiohttp.ClientSession
    code: str = ""
    # Refs by id: a code of digits only (1 in 216, e.g. "377") is looked up as an id.
    ref: str = ""
    page_keys: list[str] = field(default_factory=list)

    @property
    def app(self) -> web.Application:
        """The application the daemon is serving (its router is the list of endpoints)."""
        runner = self.daemon._runner
        assert runner is not None
        return runner.app

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the daemon's store."""
        assert self.daemon.store is not None
        async with self.daemon.store.reader.execute(sql, args) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def state(self) -> str:
        """A fingerprint of everything any request could change."""
        out = []
        for table in (
            "incidents",
            "incident_members",
            "timeline",
            "silences",
            "tickets",
            "ticket_comments",
            "paging_escalations",
            "paging_queue",
            "paging_pages",
            "paging_webhook_seen",
        ):
            out.append(f"{table}: {await self.rows(f'SELECT * FROM {table} ORDER BY 1')}")
        out.append(f"heartbeats: {sorted(book().last.items())}")
        am = self.daemon.alertmanager
        assert am is not None
        out.append(f"alertmanager: {sorted(am.firing)} rejected={am.rejected}")
        return "\n".join(out)

    async def settled(self, limit: float = 20.0) -> str:
        """The fingerprint once it stops moving (the pages have gone out and been recorded)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        last = await self.state()
        while loop.time() < end:
            await asyncio.sleep(0.3)
            now = await self.state()
            if now == last:
                return now
            last = now
        raise AssertionError("the daemon's state never settled")

    async def incident_state(self) -> str:
        [(state,)] = await self.rows("SELECT state FROM incidents WHERE code=?", self.code)
        return str(state)

    async def login(self, token: str) -> tuple[str, str]:
        """Log in to the dashboard: (session cookie header, the session's CSRF token)."""
        async with self.http.get(self.url + "/login") as r:
            page = await r.text()
            login_cookie = r.cookies["nocd_login"].value
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        assert m, page
        async with self.http.post(
            self.url + "/login",
            data={"csrf": m.group(1), "token": token},
            headers={"Cookie": f"nocd_login={login_cookie}"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303, await r.text()
            cookie = f"nocd_session={r.cookies['nocd_session'].value}"
        async with self.http.get(self.url + "/", headers={"Cookie": cookie}) as r:
            assert r.status == 200
            m = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert m
        return cookie, m.group(1)


async def wait_for(pred: Callable[[], Awaitable[bool]], what: str, limit: float = 15.0) -> None:
    """Poll `pred` (bounded) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not await pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp: Path, code: str | None = None) -> AsyncIterator[World]:
    """Start the daemon against the Twilio fake; yield once Alice has been called and texted.

    `code` forces the incident's code (e.g. an all-digit one a database may hold from before
    codes excluded them)."""
    port = free_port()
    with pytest.MonkeyPatch.context() as mp, structlog.testing.capture_logs() as logs:
        if code is not None:
            mp.setattr("nocd.incidents.engine.random_code", lambda length=3: code)
        mp.setenv("NOCD_SEC_READ_TOKEN", READ_TOKEN)
        mp.setenv("NOCD_SEC_ADMIN_TOKEN", ADMIN_TOKEN)
        mp.setenv("NOCD_SEC_TWILIO_SID", SID)
        mp.setenv("NOCD_SEC_TWILIO_TOKEN", TWILIO_TOKEN)
        async with FakeTwilio(
            SID, TWILIO_TOKEN, public_url=PUBLIC_URL, webhook_base=f"http://127.0.0.1:{port}"
        ) as fake:
            daemon = Daemon(
                load_text(config(tmp, port, closed_port()), "security.yaml"),
                notifier=Notifier(environ={}),
                twilio_base_url=fake.base_url,
            )
            await daemon.start()
            http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            try:
                w = World(daemon, fake, f"http://127.0.0.1:{port}", logs, http)

                async def paged() -> bool:
                    return len(fake.calls) >= 1 and len(fake.messages) >= 1

                await wait_for(paged, "Alice to be called and texted", 30.0)
                [(inc_id, w.code)] = await w.rows("SELECT id, code FROM incidents")
                w.ref = str(inc_id)
                w.page_keys = [k for (k,) in await w.rows("SELECT key FROM paging_pages")]
                yield w
            finally:
                await http.close()
                await daemon.stop()


# ---- the matrix ---------------------------------------------------------------------------


def endpoints(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route the daemon serves."""
    found = set()
    for route in app.router.routes():
        assert route.resource is not None
        found.add((route.method, route.resource.canonical))
    return sorted(found, key=lambda e: (e[1], e[0]))


def kind_of(method: str, path: str) -> str:
    """public | twilio | session | read | write — or a test failure naming the endpoint."""
    if (method, path) in PUBLIC:
        return "public"
    if (method, path) in TWILIO:
        return "twilio"
    if (method, path) in SESSION:
        return "session"
    if path.startswith("/api/"):
        return "read" if method in READ_METHODS else "write"
    pytest.fail(f"{method} {path} is not classified: add it to PUBLIC, TWILIO or SESSION")


def concrete(path: str, values: dict[str, str]) -> str:
    """The path template with its parameters filled in."""
    if path == "/static":
        return "/static/nocd.css"

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            pytest.fail(f"{path}: no test value for the parameter {{{name}}}; add one")
        return values[name]

    return re.sub(r"\{(\w+)\}", fill, path)


def body_for(path: str) -> Any:
    """The JSON body an admin would send (refused calls send the same one)."""
    if path == "/api/v1/silences":
        return {"name": "matrix", "match": {"checks": [HEARTBEAT]}, "duration": "1h"}
    if path.endswith("/notes"):
        return {"text": "matrix note"}
    if path == "/api/v1/alertmanager":
        alert = {"status": "firing", "labels": {"alertname": "TargetDown"}, "fingerprint": "f1"}
        return {"version": "4", "status": "firing", "alerts": [alert]}
    return None


def headers_for(cred: str, cookie: str) -> dict[str, str]:
    token = {"wrong": "sec-wrong-token-000000000000000", "read": READ_TOKEN, "admin": ADMIN_TOKEN}
    if cred in token:
        return {"Authorization": f"Bearer {token[cred]}"}
    if cred == "admin-cookie":
        return {"Cookie": cookie}
    return {}


async def call(
    w: World, method: str, path: str, cred: str, cookie: str, body: Any
) -> tuple[int, str, dict[str, str]]:
    """One request; returns (status, body text, headers). Streams are not read."""
    url = w.url + path
    if cred == "query":
        url += ("&" if "?" in url else "?") + f"token={ADMIN_TOKEN}&access_token={ADMIN_TOKEN}"
    data = json.dumps(body).encode() if body is not None else None
    hdrs = headers_for(cred, cookie)
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    async with w.http.request(method, url, data=data, headers=hdrs, allow_redirects=False) as r:
        if r.headers.get("Content-Type", "").startswith("text/event-stream"):
            return r.status, "", dict(r.headers)
        return r.status, await r.text(), dict(r.headers)


def expected(kind: str, method: str, path: str, cred: str) -> set[int]:
    """The statuses that are right for a credential on an endpoint of a kind."""
    if kind == "twilio":
        return {403}  # no signature: refused whatever token comes along
    if kind == "session":
        if cred == "admin-cookie":
            # A session without the CSRF token: pages load, every POST is refused.
            return {200} if method in READ_METHODS else {403}
        return {303}  # to /login: a bearer token does not make a dashboard session
    if kind == "public":
        if path == "/login" and method in READ_METHODS and cred == "admin-cookie":
            return {303}  # already logged in: to the dashboard
        return {403} if (method, path) == ("POST", "/login") else {200}
    if cred in ("none", "wrong", "query", "admin-cookie"):
        return {401}
    if cred == "read" and kind == "write":
        return {403}
    if (method, path) == ("POST", "/api/v1/silences"):
        return {201}
    return {200}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running(tmp_path_factory.mktemp("security")) as w:
        yield w


async def test_every_endpoint_by_every_credential(world: World) -> None:
    w = world
    cookie, _csrf = await w.login(ADMIN_TOKEN)
    _, made, _ = await call(
        w, "POST", "/api/v1/silences", "admin", cookie, body_for("/api/v1/silences")
    )
    values = {
        "name": HEARTBEAT,
        "site": "main-street",
        "ref": w.ref,
        "id": str(json.loads(made)["id"]),
        "key": w.page_keys[0],
        "action": "ack",
    }
    routes = endpoints(w.app)
    classified = {e: kind_of(*e) for e in routes}
    # Stale allow-list entries would hide a removed-and-re-added route's new behaviour.
    assert (PUBLIC | TWILIO | SESSION) <= set(routes), (PUBLIC | TWILIO | SESSION) - set(routes)

    matrix: dict[tuple[str, str], dict[str, int]] = {e: {} for e in routes}
    wrong: list[str] = []
    before = await w.settled()
    for cred in CREDENTIALS[:-1]:  # everything but admin: nothing may change
        for method, path in routes:
            kind = classified[(method, path)]
            status, text, hdrs = await call(
                w, method, concrete(path, values), cred, cookie, body_for(path)
            )
            matrix[(method, path)][cred] = status
            if status not in expected(kind, method, path, cred):
                wrong.append(f"{method} {path} [{cred}] -> {status}: {text[:200]}")
            if status == 401:
                assert hdrs.get("WWW-Authenticate") == 'Bearer realm="nocd"', path
                assert ADMIN_TOKEN not in text and READ_TOKEN not in text
            if await w.state() != before:
                wrong.append(f"{method} {path} [{cred}] -> {status} CHANGED STATE")
                before = await w.settled()
    # No existence oracle: unknown ids and names answer 401 before any lookup.
    bogus = dict.fromkeys(values, "no-such-thing-404")
    for method, path in routes:
        if classified[(method, path)] in ("read", "write") and "{" in path:
            status, _, _ = await call(w, method, concrete(path, bogus), "none", cookie, None)
            if status != 401:
                wrong.append(f"{method} {concrete(path, bogus)} [none] -> {status}, not 401")
    assert not wrong, "\n".join(wrong)

    # Admin: reads answer, each write goes through and changes the state (the control).
    writes = sorted(
        (e for e in routes if classified[e] == "write"), key=lambda e: e[1].endswith("/resolve")
    )
    reads = [e for e in routes if classified[e] != "write"]
    for method, path in [*reads, *writes]:
        kind = classified[(method, path)]
        state0 = await w.state()
        status, text, _ = await call(
            w, method, concrete(path, values), "admin", cookie, body_for(path)
        )
        matrix[(method, path)]["admin"] = status
        if status not in expected(kind, method, path, "admin"):
            wrong.append(f"{method} {path} [admin] -> {status}: {text[:200]}")
        if kind == "write" and await w.state() == state0:
            wrong.append(f"{method} {path} [admin] -> {status} changed nothing")
    assert not wrong, "\n".join(wrong)
    assert await w.incident_state() == "resolved"
    write_matrix(matrix, classified)


def write_matrix(
    matrix: dict[tuple[str, str], dict[str, int]], classified: dict[tuple[str, str], str]
) -> None:
    """The matrix as a Markdown table, when NOCD_SECURITY_MATRIX names a file."""
    target = os.environ.get("NOCD_SECURITY_MATRIX")
    if not target:
        return
    lines = [
        "| endpoint | auth | " + " | ".join(CREDENTIALS) + " |",
        "|---|---|" + "---|" * len(CREDENTIALS),
    ]
    for (method, path), row in matrix.items():
        cells = " | ".join(str(row.get(c, "")) for c in CREDENTIALS)
        lines.append(f"| `{method} {path}` | {classified[(method, path)]} | {cells} |")
    counts: dict[str, int] = {}
    for k in classified.values():
        counts[k] = counts.get(k, 0) + 1
    lines.append("")
    lines.append(
        f"{len(matrix)} routes ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), "
        f"{len(matrix) * len(CREDENTIALS)} requests."
    )
    Path(target).write_text("\n".join(lines) + "\n")


async def test_an_unclassified_endpoint_fails_the_matrix() -> None:
    """The control: a new route outside /api/ is not silently treated as anything."""
    with pytest.raises(pytest.fail.Exception, match="not classified"):
        kind_of("POST", "/ui/something-new")
    assert kind_of("DELETE", "/api/v1/something-new") == "write"
    assert kind_of("GET", "/api/v1/something-new") == "read"
    with pytest.raises(pytest.fail.Exception, match="no test value"):
        concrete("/api/v1/things/{thing}", {})
