"""The daemon end to end: `nocd run` as a subprocess against local HTTP/TCP servers.

Covers check down/up in /metrics, SIGHUP with a broken then a good config, SIGTERM exit 0,
sd_notify READY/WATCHDOG on a real NOTIFY_SOCKET, and the watchdog stopping when the
scheduler dies (in-process, so the loop stays alive while the scheduler does not).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]


# ---- helpers --------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples keyed by (name, sorted labels)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


async def eventually(
    probe: Callable[[], object], what: str, limit: float = 15.0, every: float = 0.1
) -> None:
    """Await `probe()` (sync or async) until it returns truthy; fail after `limit` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > end:
            pytest.fail(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class Target:
    """A local HTTP server whose /health answers 200 or 500, plus a TCP listener."""

    http_port: int
    tcp_port: int
    healthy: bool = True


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    state = Target(0, 0)

    async def health(_r: web.Request) -> web.Response:
        return web.Response(status=200 if state.healthy else 500, text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    tcp = await asyncio.start_server(accept, "127.0.0.1", 0)
    state.tcp_port = tcp.sockets[0].getsockname()[1]
    yield state
    tcp.close()
    await tcp.wait_closed()
    await runner.cleanup()


def config_text(listen: int, state_path: Path, t: Target, extra: str = "") -> str:
    return f"""
daemon:
  listen: 127.0.0.1:{listen}
  state_path: {state_path}
  log_format: json
  log_level: info
  shutdown_grace: 3s
checks:
  - name: web
    type: http
    target: http://127.0.0.1:{t.http_port}/health
    interval: 1s
    timeout: 500ms
    retries: 1
  - name: sock
    type: tcp
    target: 127.0.0.1:{t.tcp_port}
    interval: 1s
    timeout: 500ms
    retries: 1
{extra}"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env.update(extra)
    return env


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `nocd run -c FILE`; logs go to files (a full pipe must never block nocd)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (tmp_path / "nocd.stdout").open("wb")
        err = (tmp_path / "nocd.stderr").open("wb")
        p = subprocess.Popen(
            [sys.executable, "-m", "nocd", "run", "-c", str(config)],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            env=env,
        )
        out.close()
        err.close()
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def logs(tmp_path: Path) -> list[dict[str, object]]:
    """The daemon's JSON log lines (every line must be JSON with log_format: json)."""
    out = []
    for line in (tmp_path / "nocd.stderr").read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


async def wait_exit(proc: subprocess.Popen[bytes], limit: float) -> int:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while proc.poll() is None:
        if loop.time() > end:
            pytest.fail(f"nocd did not exit within {limit}s")
        await asyncio.sleep(0.05)
    return proc.returncode


# ---- the subprocess lifecycle ----------------------------------------------------------


async def test_run_detects_down_up_reloads_and_stops(
    tmp_path: Path, target: Target, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    cfg_path = tmp_path / "nocd.yaml"
    cfg_path.write_text(config_text(port, tmp_path / "state" / "nocd.db", target))
    proc = spawn(cfg_path, clean_env())
    url = f"http://127.0.0.1:{port}/metrics"
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async with aiohttp.ClientSession() as http:

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            assert proc.poll() is None, f"nocd exited: {(tmp_path / 'nocd.stderr').read_text()}"
            try:
                async with http.get(url) as resp:
                    seen.clear()
                    seen.update(parse_metrics(await resp.text()))
            except aiohttp.ClientConnectionError:
                seen.clear()
            return seen

        def check(name: str, metric: str = "nocd_check_up") -> float | None:
            return sample(seen, metric, check=name)

        async def until(cond: Callable[[], bool], what: str) -> None:
            async def attempt() -> bool:
                await scrape()
                return bool(seen) and cond()

            await eventually(attempt, what)

        # Both checks probed and up.
        await until(
            lambda: (
                (check("web", "nocd_check_probes_total") or 0) >= 1
                and (check("sock", "nocd_check_probes_total") or 0) >= 1
            ),
            "first probes",
        )
        assert check("web") == 1 and check("sock") == 1
        assert sample(seen, "nocd_config_last_reload_successful") == 1

        # The HTTP target fails: with retries 1 the next probe makes it hard down.
        target.healthy = False
        await until(lambda: check("web") == 0, "web down")
        assert check("web", "nocd_check_severity") == 4  # critical
        assert sample(seen, "nocd_check_failures_total", check="web", failure="server_error")
        assert check("sock") == 1  # the other check is unaffected
        target.healthy = True
        await until(lambda: check("web") == 1, "web back up")

        # SIGHUP with a broken config: refused, the old config keeps running.
        probes_before = check("web", "nocd_check_probes_total") or 0
        cfg_path.write_text("daemon:\n  listen: [broken\n")
        proc.send_signal(signal.SIGHUP)
        await until(
            lambda: sample(seen, "nocd_config_last_reload_successful") == 0, "reload refused"
        )
        await until(
            lambda: (check("web", "nocd_check_probes_total") or 0) >= probes_before + 2,
            "old config still probing",
        )
        assert check("web2") is None

        # SIGHUP with a good config adding a check: it appears and is probed.
        extra = f"""  - name: web2
    type: http
    target: http://127.0.0.1:{target.http_port}/health
    interval: 1s
    timeout: 500ms
"""
        cfg_path.write_text(config_text(port, tmp_path / "state" / "nocd.db", target, extra))
        proc.send_signal(signal.SIGHUP)
        await until(
            lambda: (
                sample(seen, "nocd_config_last_reload_successful") == 1
                and (check("web2", "nocd_check_probes_total") or 0) >= 1
            ),
            "new check after reload",
        )
        assert check("web2") == 1
        assert sample(seen, "nocd_checks_configured") == 3

    # SIGTERM: clean exit within the grace period (3 s) plus start-up slack.
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 10.0) == 0

    events = logs(tmp_path)
    names = [(e.get("event"), e.get("check")) for e in events]
    assert ("check down", "web") in names
    assert ("check recovered", "web") in names
    refused = [
        e for e in events if e.get("event") == "config reload refused; keeping the running config"
    ]
    assert refused and str(cfg_path) in json.dumps(refused[0])
    assert ("nocd stopped", None) in names


# ---- systemd notify ---------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    if len(str(path)) >= 100:  # sun_path is 108 bytes
        pytest.skip("tmp path too long for an AF_UNIX socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield str(path), sock
    sock.close()


async def receive(sock: socket.socket, limit: float) -> list[str]:
    """Datagrams that arrive within `limit` seconds."""
    loop = asyncio.get_running_loop()
    out: list[str] = []
    end = loop.time() + limit
    while loop.time() < end:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            await asyncio.sleep(0.02)
    return out


async def receive_until(sock: socket.socket, want: str, limit: float = 15.0) -> list[str]:
    """Collect datagrams until one contains the line `want`."""
    got: list[str] = []

    def has() -> bool:
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
        return any(want in d.splitlines() for d in got)

    await eventually(has, f"{want} on NOTIFY_SOCKET", limit, every=0.02)
    return got


async def test_run_notifies_ready_and_watchdog(
    tmp_path: Path,
    target: Target,
    spawn: Callable[..., subprocess.Popen[bytes]],
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    cfg_path = tmp_path / "nocd.yaml"
    cfg_path.write_text(config_text(free_port(), tmp_path / "nocd.db", target))
    proc = spawn(cfg_path, clean_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="900000"))
    got = await receive_until(sock, "READY=1")
    assert any(d.startswith("STATUS=") for d in got)
    # WatchdogSec 0.9 s: pings must come at least every 0.45 s, so ≥ 3 in 1.5 s.
    later = await receive(sock, 1.5)
    assert sum("WATCHDOG=1" in d.splitlines() for d in later) >= 3
    proc.send_signal(signal.SIGHUP)
    reload_msgs = await receive_until(sock, "READY=1")
    assert any(d.startswith("RELOADING=1\nMONOTONIC_USEC=") for d in reload_msgs)
    proc.send_signal(signal.SIGTERM)
    await receive_until(sock, "STOPPING=1")
    assert await wait_exit(proc, 10.0) == 0


async def test_watchdog_stops_when_the_scheduler_dies(
    tmp_path: Path, target: Target, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    port = free_port()
    cfg = load_text(config_text(port, tmp_path / "nocd.db", target))
    daemon = Daemon(
        cfg, notifier=Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"})
    )
    await daemon.start()
    try:
        await receive_until(sock, "READY=1")
        await receive_until(sock, "WATCHDOG=1")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200

            sched = next(t for t in daemon._tasks if t.get_name() == "scheduler")
            sched.cancel()
            await asyncio.gather(sched, return_exceptions=True)
            await asyncio.sleep(0.3)  # let a ping already on its way arrive
            await receive(sock, 0.0)  # drain
            # The loop, the HTTP listener and the watchdog task are alive; the pings are not.
            silent = await receive(sock, 1.5)
            assert not any("WATCHDOG=1" in d.splitlines() for d in silent), silent
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["conditions"]["scheduler"] is False
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200  # the process answers: liveness is not readiness
    finally:
        await daemon.stop()
    assert "STOPPING=1" in "\n".join(await receive(sock, 0.1))
