"""Self-monitoring: a blocked event loop or a dead scheduler silences the watchdog and the
outbound heartbeat, so systemd (WatchdogSec=) and an external dead man's switch notice.

tests/integration/test_daemon.py covers READY/WATCHDOG on a real NOTIFY_SOCKET and the
watchdog stopping once the scheduler task dies; this adds the blocked loop and the heartbeat.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from tests.peers import free_port


@dataclass
class Pings:
    """Arrival times (monotonic) of heartbeat requests and WATCHDOG=1 datagrams."""

    heartbeat: list[float] = field(default_factory=list)
    watchdog: list[float] = field(default_factory=list)
    status: int = 200


class DatagramRecorder:
    """Receives NOTIFY_SOCKET datagrams in a thread, so arrival times are real even while
    the test's own event loop (the daemon's) is blocked."""

    def __init__(self, path: Path, pings: Pings) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = str(path)
        self._pings = pings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in data.splitlines():
                self._pings.watchdog.append(time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def pings() -> Pings:
    return Pings()


@pytest.fixture
def recorder(tmp_path: Path, pings: Pings) -> Iterator[DatagramRecorder]:
    path = tmp_path / "notify.sock"
    if len(str(path)) >= 100:
        pytest.skip("tmp path too long for an AF_UNIX socket")
    rec = DatagramRecorder(path, pings)
    yield rec
    rec.close()


@pytest.fixture
async def dead_mans_switch(pings: Pings) -> AsyncIterator[str]:
    """A healthchecks-style receiver on 127.0.0.1: GET /ping/<uuid> is recorded."""

    async def ping(_r: web.Request) -> web.Response:
        pings.heartbeat.append(time.monotonic())
        return web.Response(status=pings.status, text="OK")

    app = web.Application()
    app.router.add_get("/ping/{uuid}", ping)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/ping/5f1c6b1e-0000-4000-8000-000000000001"
    await runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[int]:
    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield int(srv.sockets[0].getsockname()[1])
    srv.close()
    await srv.wait_closed()


def config(tmp: Path, port: int, target: int, heartbeat: str | None) -> str:
    hb = f"  heartbeat_url: {heartbeat}\n  heartbeat_interval: 200ms\n" if heartbeat else ""
    return f"""
daemon:
  listen: 127.0.0.1:{port}
  state_path: {tmp}/nocd.db
{hb}checks:
  - name: pbx
    type: tcp
    target: 127.0.0.1:{target}
    interval: 1s
    timeout: 500ms
"""


def between(times: list[float], start: float, end: float) -> list[float]:
    return [t for t in times if start < t < end]


async def wait_count(times: list[float], n: int, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while len(times) < n:
        if time.monotonic() > end:
            pytest.fail(f"only {len(times)} of {n} pings within {limit}s")
        await asyncio.sleep(0.05)


async def test_a_blocked_event_loop_stops_watchdog_and_heartbeat(
    tmp_path: Path, pings: Pings, recorder: DatagramRecorder, dead_mans_switch: str, target: int
) -> None:
    port = free_port()
    cfg = load_text(config(tmp_path, port, target, dead_mans_switch))
    notifier = Notifier(environ={"NOTIFY_SOCKET": recorder.path, "WATCHDOG_USEC": "600000"})
    daemon = Daemon(cfg, notifier=notifier)
    await daemon.start()
    try:
        await wait_count(pings.watchdog, 3)
        await wait_count(pings.heartbeat, 2)
        await asyncio.sleep(1.0)  # a healthy stretch to compare with
        # Something on the loop blocks (a synchronous call in a probe, a CPU-bound bug):
        # nothing in the daemon runs, so nothing may claim it is alive.
        start = time.monotonic()
        time.sleep(1.5)  # noqa: ASYNC251 - blocking the loop is the point of this test
        end = time.monotonic()
        n = len(pings.watchdog)
        await wait_count(pings.watchdog, n + 3)  # the loop runs again: so do the pings
        assert between(pings.watchdog, start + 0.05, end - 0.05) == []
        assert between(pings.heartbeat, start + 0.05, end - 0.05) == []
        gaps = [b - a for a, b in pairwise(pings.watchdog)]
        # systemd would have killed us: no ping for longer than WatchdogSec (0.6 s) …
        assert max(gaps) >= 1.4
        # … while a healthy loop pings at least twice per WatchdogSec.
        before = [g for a, g in zip(pings.watchdog, gaps, strict=False) if a < start - 0.5]
        assert before and max(before) <= 0.35, before
    finally:
        await daemon.stop()
        notifier.close()


async def test_heartbeat_only_while_healthy(
    tmp_path: Path, pings: Pings, dead_mans_switch: str, target: int
) -> None:
    port = free_port()
    cfg = load_text(config(tmp_path, port, target, dead_mans_switch))
    daemon = Daemon(cfg, notifier=Notifier(environ={}))
    await daemon.start()
    try:
        await wait_count(pings.heartbeat, 3)
        first = pings.heartbeat[:3]
        assert max(b - a for a, b in pairwise(first)) < 0.6
        # The receiver failing does not stop the pings (nor the daemon).
        pings.status = 503
        n = len(pings.heartbeat)
        await wait_count(pings.heartbeat, n + 2)
        assert daemon.heartbeat.failed >= 2
        pings.status = 200
        # The scheduler dies: not ready, so no more heartbeats although the loop runs.
        sched = next(t for t in daemon._tasks if t.get_name() == "scheduler")
        sched.cancel()
        await asyncio.gather(sched, return_exceptions=True)
        await asyncio.sleep(0.5)  # a ping already on its way may land
        n = len(pings.heartbeat)
        await asyncio.sleep(1.5)
        assert len(pings.heartbeat) == n
        assert daemon.heartbeat.skipped >= 5
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["conditions"]["scheduler"] is False
    finally:
        await daemon.stop()


async def test_no_heartbeat_url_no_requests(tmp_path: Path, pings: Pings, target: int) -> None:
    cfg = load_text(config(tmp_path, free_port(), target, None))
    daemon = Daemon(cfg, notifier=Notifier(environ={}))
    await daemon.start()
    try:
        await asyncio.sleep(0.5)
        assert daemon.heartbeat.sent == 0 and daemon.heartbeat.skipped == 0
    finally:
        await daemon.stop()


def test_heartbeat_url_must_be_http() -> None:
    from nocd.configload import ConfigError

    with pytest.raises(ConfigError, match="heartbeat_url must be an http"):
        load_text("daemon:\n  heartbeat_url: hc-ping.example.com/abc\n")
