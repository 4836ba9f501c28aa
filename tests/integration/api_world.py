"""A real nocd daemon started in-process on 127.0.0.1 for API, CLI and browser tests.

One site (main-street) probes a TCP port nobody listens on (interval 1s, retries 1), so
it turns red within about two seconds; elm-street probes a live listener and a registrar
(the Asterisk ARI fake) with three phones registered, and stays green.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from nocd.configload import load_text
from nocd.daemon import Daemon
from tests.fakes.asterisk_ari import FakeAri
from tests.peers import free_port

READ_TOKEN = "read-token-0123456789abcdef"
WRITE_TOKEN = "write-token-fedcba9876543210"
ARI_PASSWORD = "ari-secret-password-xyz"
SECRET_MARKERS = (READ_TOKEN, WRITE_TOKEN, ARI_PASSWORD)


def config_text(port: int, dead_port: int, live_port: int, ari_port: int, db: Path) -> str:
    """The test config: two sites, a dead and a live TCP check, phones, tokens, a schedule."""
    return f"""
daemon:
  listen: 127.0.0.1:{port}
  state_path: {db}
  log_format: json
  log_level: warning
customers:
  acme: {{name: Acme Dental, partner: Example Partner}}
sites:
  main-street:
    name: Main Street
    customer: acme
    timezone: America/New_York
    devices:
      pbx1: {{kind: pbx, serial: EX-PBX-0001, model: Example PBX 500}}
  elm-street: {{name: Elm Street, customer: acme}}
checks:
  - name: main-street-pbx
    type: tcp
    target: 127.0.0.1:{dead_port}
    site: main-street
    device: pbx1
    interval: 1s
    timeout: 1s
    retries: 1
    labels: {{service: Hosted voice}}
  - name: elm-street-pbx
    type: tcp
    target: 127.0.0.1:{live_port}
    site: elm-street
    interval: 1s
    timeout: 1s
    retries: 1
    labels: {{service: SIP trunks}}
  - name: elm-street-phones
    type: sip_registrations
    source: asterisk_ari
    target: http://127.0.0.1:{ari_port}/ari
    username: nocd
    password: "${{NOCD_TEST_ARI_PASSWORD}}"
    expected: ["101", "102", "103"]
    site: elm-street
    interval: 1s
    timeout: 1s
    retries: 1
maintenance:
  - name: sunday-upgrade
    match: {{sites: [elm-street]}}
    start: 2030-01-06T02:00:00Z
    end: 2030-01-06T04:00:00Z
    public: true
    comment: Planned PBX firmware upgrade
paging:
  people:
    alice: {{name: Alice Example, phone: "+15550101"}}
    bob: {{name: Bob Example, phone: "+15550102"}}
  schedules:
    noc-primary:
      timezone: America/New_York
      layers:
        - name: weekly
          rotation: weekly
          start: 2026-01-05
          handoff: "09:00"
          participants: [alice, bob]
api:
  tokens:
    - {{name: reader, token: "${{NOCD_TEST_READ_TOKEN}}", scopes: [read]}}
    - {{name: alice-ops, token: "${{NOCD_TEST_TOKEN}}", scopes: [read, write]}}
"""


@dataclass
class World:
    """The running daemon and how to reach it."""

    daemon: Daemon
    url: str
    listener: asyncio.Server
    ari: web.AppRunner

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = WRITE_TOKEN,
        body: Any = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request from a worker thread (the daemon runs on this loop)."""
        return await asyncio.to_thread(request, self.url, method, path, token, body, raw)

    async def wait_for_incident(self, timeout: float = 10.0) -> dict[str, Any]:
        """The open incident of main-street, once its dead check has opened one."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            status, body = await self.call("GET", "/api/v1/incidents?site=main-street")
            if status == 200 and body["incidents"]:
                return dict(body["incidents"][0])
            await asyncio.sleep(0.2)
        raise AssertionError("no incident opened for main-street")


def request(
    url: str,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """A blocking HTTP request; returns (status, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, text, ctype = resp.status, resp.read().decode(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, text, ctype = exc.code, exc.read().decode(), exc.headers["Content-Type"]
    if ctype and ctype.startswith("application/json"):
        return status, json.loads(text)
    return status, text


async def start_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """Start a live TCP listener and the daemon; the caller stops both."""
    monkeypatch.setenv("NOCD_TEST_READ_TOKEN", READ_TOKEN)
    monkeypatch.setenv("NOCD_TEST_TOKEN", WRITE_TOKEN)
    monkeypatch.setenv("NOCD_TEST_ARI_PASSWORD", ARI_PASSWORD)
    listener = await asyncio.start_server(_drop, "127.0.0.1", 0)
    live_port = listener.sockets[0].getsockname()[1]
    ari = FakeAri(password=ARI_PASSWORD)
    ari.endpoints = {"PJSIP/101": "online", "PJSIP/102": "online", "PJSIP/103": "online"}
    runner = web.AppRunner(ari.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ari_port = runner.addresses[0][1]
    port = free_port()
    text = config_text(port, _closed_port(), live_port, ari_port, tmp_path / "nocd.db")
    daemon = Daemon(load_text(text, "test.yaml"))
    await daemon.start()
    return World(daemon, f"http://127.0.0.1:{port}", listener, runner)


@contextlib.asynccontextmanager
async def running_world(
    tmp_path_factory: pytest.TempPathFactory, name: str, quiet: bool = False
) -> AsyncIterator[World]:
    """A world for a whole test module, with main-street's incident already open.

    `quiet` keeps the daemon's log lines out of stdout (the CLI tests read stdout).
    """
    logs = structlog.testing.capture_logs() if quiet else contextlib.nullcontext()
    with pytest.MonkeyPatch.context() as mp, logs:
        w = await start_world(tmp_path_factory.mktemp(name), mp)
        try:
            await w.wait_for_incident()
            yield w
        finally:
            await stop_world(w)


async def stop_world(world: World) -> None:
    """Stop the daemon and the listener."""
    await world.daemon.stop()
    world.listener.close()
    await world.listener.wait_closed()
    await world.ari.cleanup()


async def _drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def _closed_port() -> int:
    """A port that refuses connections (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
