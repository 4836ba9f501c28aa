"""Garbage into a running daemon's intake: Alertmanager webhook, heartbeats, SNMP traps (#10).

One real Daemon (HTTP listener, pipeline, store, trap receiver on 127.0.0.1) per test. Every
hostile request must get a 4xx, change no check's state, and leave the daemon serving: after
the garbage, a valid webhook / heartbeat / trap (a datagram net-snmp's snmptrap sent, kept in
tests/data/fuzz_seeds) still goes through.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.intake.alertmanager import MAX_BODY
from nocd.sdnotify import Notifier
from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "data" / "fuzz_seeds"
TOKEN = "bad-input-write-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UPS_ON_BATTERY = "1.3.6.1.4.1.318.0.5"  # the trap in trap_v2c.bin


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("BAD_INPUT_TOKEN", TOKEN)
    monkeypatch.setenv("BAD_INPUT_COMMUNITY", "fuzz-community")  # what the seed traps carry
    cfg = load_text(
        f"""
daemon:
  listen: "127.0.0.1:{free_port()}"
  state_path: "{tmp_path}/nocd.db"
  log_format: json
  traps: {{listen: "127.0.0.1:0", communities: ["${{BAD_INPUT_COMMUNITY}}"]}}
sites:
  main-street: {{name: Main Street}}
api:
  tokens:
    - {{name: intake, token: "${{BAD_INPUT_TOKEN}}", scopes: [read, write]}}
checks:
  - {{name: nightly-backup, type: heartbeat, site: main-street, period: 1h, interval: 1s,
     timeout: 1s}}
  - {{name: prom-pbx-down, type: alertmanager, site: main-street, retries: 1,
     matchers: ['alertname="PbxDown"']}}
  - {{name: ups-battery, type: snmp_trap, site: main-street, trap_oid: "{UPS_ON_BATTERY}"}}
""",
        "bad-input.yaml",
    )
    d = Daemon(cfg, notifier=Notifier(environ={}))
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


def url(d: Daemon, path: str) -> str:
    assert d.bound is not None
    return f"http://127.0.0.1:{d.bound[1]}{path}"


def snapshot(d: Daemon) -> dict[str, object]:
    """What garbage must not change: the passive checks' results and whether a beat came.

    (The heartbeat check is also probed every second, so its result's age moves on its own;
    `seen` flips only when a beat is recorded.)
    """
    assert d.pipeline is not None
    out: dict[str, object] = {}
    for name in ("prom-pbx-down", "ups-battery"):
        res = d.pipeline.results.get(name)
        state = d.pipeline.states.get(name)
        out[name] = (
            res.observation if res is not None else None,
            state.up if state is not None else None,
        )
    beat = d.pipeline.results.get("nightly-backup")
    out["nightly-backup seen"] = bool(beat and beat.observation.values.get("seen"))
    return out


async def still_serving(d: Daemon, s: aiohttp.ClientSession) -> None:
    async with s.get(url(d, "/healthz")) as r:
        assert r.status == 200
    async with s.get(url(d, "/readyz")) as r:
        assert r.status == 200, await r.text()


def firing() -> dict[str, object]:
    labels = {"alertname": "PbxDown", "severity": "critical"}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "nocd",
        "groupKey": "g",
        "alerts": [{"status": "firing", "labels": labels, "fingerprint": "0123456789abcdef"}],
    }


def deep(n: int) -> bytes:
    return b'{"version":"4","status":"firing","alerts":' + b"[" * n + b"]" * n + b"}"


GARBAGE: dict[str, bytes] = {
    "empty": b"",
    "not JSON": b"garbage",
    "truncated JSON": json.dumps(firing()).encode()[:40],
    "binary": bytes(range(256)),
    "invalid UTF-8": b'{"version":"4","status":"\xff\xfe"}',
    "a JSON list": b"[1, 2, 3]",
    "version as a number": json.dumps({**firing(), "version": 4}).encode(),
    "unknown version": json.dumps({**firing(), "version": "5"}).encode(),
    "alerts as a map": json.dumps({**firing(), "alerts": {"a": 1}}).encode(),
    "labels with numbers": json.dumps(
        {**firing(), "alerts": [{"status": "firing", "labels": {"alertname": 1}}]}
    ).encode(),
    "labels as a list": json.dumps(
        {**firing(), "alerts": [{"status": "firing", "labels": ["PbxDown"]}]}
    ).encode(),
    "alert status unknown": json.dumps(
        {**firing(), "alerts": [{"status": "on fire", "labels": {"alertname": "PbxDown"}}]}
    ).encode(),
    "nested 100,000 deep": deep(100_000),
    "huge number": b'{"version":"4","status":"firing","alerts":[],"x":1' + b"0" * 100_000 + b"}",
    "NUL in a key": b'{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alert\x00name":1}}]}',
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
async def test_alertmanager_garbage_is_a_400_and_changes_nothing(daemon: Daemon, case: str) -> None:
    assert daemon.alertmanager is not None
    before = snapshot(daemon)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            url(daemon, "/api/v1/alertmanager"), data=GARBAGE[case], headers=AUTH
        ) as r:
            assert r.status == 400, f"{case}: {r.status} {await r.text()}"
            body = await r.json()
            assert "error" in body and "Traceback" not in body["error"]
        assert snapshot(daemon) == before
        assert daemon.alertmanager.rejected == 1
        await still_serving(daemon, s)
        # ...and a real webhook still opens the check's outage.
        async with s.post(url(daemon, "/api/v1/alertmanager"), json=firing(), headers=AUTH) as r:
            assert r.status == 200, await r.text()
    assert daemon.pipeline is not None
    assert not daemon.pipeline.states["prom-pbx-down"].up


async def test_an_oversized_webhook_is_a_413_read_no_further(daemon: Daemon) -> None:
    """64 MiB streamed: refused once past the 4 MiB cap, not buffered whole."""
    assert daemon.alertmanager is not None
    before = snapshot(daemon)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b" " * (1 << 20)
        for _ in range(64):
            sent += len(chunk)
            yield chunk

    async with aiohttp.ClientSession() as s:
        try:
            async with s.post(url(daemon, "/api/v1/alertmanager"), data=body(), headers=AUTH) as r:
                assert r.status == 413
        except aiohttp.ClientError:
            pass  # the daemon may hang up on the rest of the upload: also a refusal
        assert daemon.alertmanager.rejected == 1
        assert snapshot(daemon) == before
        # Just over the cap, sent whole with a Content-Length: a clean 413.
        async with s.post(
            url(daemon, "/api/v1/alertmanager"), data=io.BytesIO(bytes(MAX_BODY + 1)), headers=AUTH
        ) as r:
            assert r.status == 413
        await still_serving(daemon, s)


HEARTBEAT_NAMES = {
    "unknown": "no-such-job",
    "10 KB name": "a" * 10_000,
    "percent-encoded NUL": "nightly-backup%00",
    "path traversal": "..%2f..%2fetc%2fpasswd",
    "unicode lookalike": "nightly\u2010backup",
    "trailing space": "nightly-backup%20",
}


@pytest.mark.parametrize("case", sorted(HEARTBEAT_NAMES))
async def test_heartbeat_garbage_names_are_4xx_and_change_nothing(
    daemon: Daemon, case: str
) -> None:
    before = snapshot(daemon)
    async with aiohttp.ClientSession() as s:
        target = url(daemon, f"/api/v1/heartbeat/{HEARTBEAT_NAMES[case]}")
        async with s.post(target, data=os.urandom(4096), headers=AUTH) as r:
            assert 400 <= r.status < 500, f"{case}: {r.status}"
        assert snapshot(daemon) == before
        async with s.get(url(daemon, "/api/v1/heartbeat/nightly-backup"), headers=AUTH) as r:
            assert r.status == 405  # a beat is a POST
        assert snapshot(daemon) == before
        await still_serving(daemon, s)
        async with s.post(url(daemon, "/api/v1/heartbeat/nightly-backup"), headers=AUTH) as r:
            assert r.status == 200
    assert daemon.pipeline is not None
    assert daemon.pipeline.results["nightly-backup"].observation.ok


def trap_datagrams() -> dict[str, bytes]:
    good = (SEEDS / "trap_v2c.bin").read_bytes()
    return {
        "garbage": os.urandom(200),
        "empty": b"",
        "pyasn1 TypeError": b"{}",
        "truncated": good[: len(good) // 2],
        "every truncation": b"",  # expanded below
        "wrong community": good.replace(b"fuzz-community", b"fuzz-communitx"),
        "64 KB": good + os.urandom(65_000),
        "wrong version": good[:4] + b"\x05" + good[5:],  # version INTEGER 1 -> 5
    }


async def test_malformed_traps_are_counted_and_the_receiver_keeps_serving(
    daemon: Daemon,
) -> None:
    assert daemon.traps is not None and daemon.pipeline is not None
    before = snapshot(daemon)
    good = (SEEDS / "trap_v2c.bin").read_bytes()
    bad = [v for k, v in trap_datagrams().items() if k != "every truncation"]
    bad += [good[:n] for n in range(1, len(good))]
    counters = daemon.traps.counters()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in bad:
            sock.sendto(datagram, ("127.0.0.1", daemon.traps.port))
            await asyncio.sleep(0.002)  # let the loop read: the socket buffer is finite
        for _ in range(100):
            await asyncio.sleep(0.05)
            if daemon.traps.counters()["snmpInPkts"] - counters["snmpInPkts"] >= len(bad) - 1:
                break
        after = daemon.traps.counters()
        assert snapshot(daemon) == before, "a malformed trap changed a check"
        assert after["received"] == counters["received"], "a malformed trap was accepted"
        assert after["malformed"] > counters["malformed"]  # the pyasn1 TypeError
        assert after["snmpInASNParseErrs"] > counters["snmpInASNParseErrs"]
        assert after["snmpInBadCommunityNames"] > counters["snmpInBadCommunityNames"]
        assert after["snmpInBadVersions"] > counters["snmpInBadVersions"]
        # The same receiver still takes a real trap (net-snmp's, from the seeds).
        sock.sendto(good, ("127.0.0.1", daemon.traps.port))
        for _ in range(100):
            await asyncio.sleep(0.05)
            res = daemon.pipeline.results.get("ups-battery")
            if res is not None:
                break
    assert res is not None and not res.observation.ok, res
    assert daemon.traps.counters()["received"] == counters["received"] + 1
    async with aiohttp.ClientSession() as s:
        await still_serving(daemon, s)
