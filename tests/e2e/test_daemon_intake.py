"""Passive intake through the running daemon: heartbeats and Alertmanager webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from tests.peers import free_port

TOKEN = "intake-write-token-0123456789"
READ_TOKEN = "intake-read-token-0123456789"


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("NOCD_INTAKE_TOKEN", TOKEN)
    monkeypatch.setenv("NOCD_INTAKE_READ_TOKEN", READ_TOKEN)
    port = free_port()
    cfg = load_text(
        f"""
daemon: {{listen: "127.0.0.1:{port}", state_path: "{tmp_path}/nocd.db", log_format: json}}
sites:
  main-street: {{name: Main Street}}
api:
  tokens:
    - {{name: backup-job, token: "${{NOCD_INTAKE_TOKEN}}", scopes: [read, write]}}
    - {{name: viewer, token: "${{NOCD_INTAKE_READ_TOKEN}}", scopes: [read]}}
checks:
  - name: nightly-backup
    type: heartbeat
    site: main-street
    period: 1h
    interval: 1s
    timeout: 1s
  - name: prom-pbx-down
    type: alertmanager
    site: main-street
    retries: 1
    matchers: ['alertname="PbxDown"']
""",
        "intake.yaml",
    )
    d = Daemon(cfg, notifier=Notifier(environ={}))
    await d.start()
    yield d
    await d.stop()


def url(d: Daemon, path: str) -> str:
    assert d.bound is not None
    return f"http://127.0.0.1:{d.bound[1]}{path}"


async def test_heartbeat_needs_a_write_token_and_a_known_name(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(url(daemon, "/api/v1/heartbeat/nightly-backup")) as r:
            assert r.status == 401
        hdr = {"Authorization": f"Bearer {READ_TOKEN}"}
        async with s.post(url(daemon, "/api/v1/heartbeat/nightly-backup"), headers=hdr) as r:
            assert r.status == 403
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        async with s.post(url(daemon, "/api/v1/heartbeat/no-such-job"), headers=hdr) as r:
            assert r.status == 404
        async with s.post(url(daemon, "/api/v1/heartbeat/nightly-backup"), headers=hdr) as r:
            assert r.status == 200
    assert daemon.pipeline is not None
    assert daemon.pipeline.results["nightly-backup"].observation.ok


def alert(status: str) -> dict[str, object]:
    labels = {"alertname": "PbxDown", "severity": "critical", "instance": "pbx.example.com"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="PbxDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "nocd",
        "groupLabels": {"alertname": "PbxDown"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "PBX down"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T00:05:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }


async def test_alertmanager_firing_opens_and_resolved_closes_an_incident(daemon: Daemon) -> None:
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    assert daemon.pipeline is not None and daemon.store is not None
    async with aiohttp.ClientSession() as s:
        async with s.post(url(daemon, "/api/v1/alertmanager"), data=b"garbage", headers=hdr) as r:
            assert r.status == 400
        async with s.post(
            url(daemon, "/api/v1/alertmanager"), json=alert("firing"), headers=hdr
        ) as r:
            assert r.status == 200, await r.text()
        assert not daemon.pipeline.states["prom-pbx-down"].up
        for _ in range(50):
            await asyncio.sleep(0.1)
            async with daemon.store.reader.execute("SELECT state, severity FROM incidents") as cur:
                rows = await cur.fetchall()
            if rows:
                break
        assert [tuple(r) for r in rows] == [("triggered", "critical")]
        async with s.post(
            url(daemon, "/api/v1/alertmanager"), json=alert("resolved"), headers=hdr
        ) as r:
            assert r.status == 200
        assert daemon.pipeline.states["prom-pbx-down"].up
