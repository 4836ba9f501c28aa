"""The daemon's /metrics exposition passes `promtool check metrics` with no problems."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.metrics import Metrics
from nocd.model import FailureClass, Observation
from nocd.sdnotify import Notifier
from nocd.state import CheckState
from tests.peers import free_port, require_binary


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    port = free_port()
    cfg = load_text(
        f"""
daemon:
  listen: 127.0.0.1:{port}
  state_path: {tmp_path / "nocd.db"}
checks:
  - {{name: self, type: http, target: 'http://127.0.0.1:{port}/healthz', interval: 1s, timeout: 500ms}}
  - {{name: closed, type: tcp, target: '127.0.0.1:{free_port()}', interval: 1s, timeout: 500ms, retries: 1}}
"""
    )
    d = Daemon(cfg, notifier=Notifier(environ={}))
    await d.start()
    yield d
    await d.stop()


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_daemon_metrics_pass_promtool(daemon: Daemon) -> None:
    assert daemon.pipeline is not None
    pipeline = daemon.pipeline
    # Let both checks run so failure counters and histograms have samples.
    url = f"http://127.0.0.1:{daemon.bound[1]}/metrics"  # type: ignore[index]
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            if {"self", "closed"} <= set(pipeline.results):
                break
            async with http.get(url) as resp:
                await resp.read()
            await asyncio.sleep(0.05)
        async with http.get(url) as resp:
            assert resp.status == 200
            text = await resp.text()
        async with http.get(url, headers={"Accept": "application/openmetrics-text"}) as resp:
            openmetrics = await resp.text()
    assert 'nocd_check_failures_total{check="closed",failure="refused"}' in text
    assert "nocd_scheduler_lateness_seconds_bucket" in text
    res = promtool(text)
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr
    assert openmetrics.rstrip().endswith("# EOF")


def test_all_metric_families_pass_promtool() -> None:
    # Every family populated, including the ones the daemon fills only on some paths.
    registry = CollectorRegistry()
    m = Metrics(registry, "1.2.3")
    m.set_checks(["pbx", "site-phones"])
    m.observe("pbx", "main-street", Observation.failed(FailureClass.TIMEOUT, "t"), CheckState())
    m.observe(
        "site-phones",
        "main-street",
        Observation.success(expected=12, registered=11, oids={"1.3.6.1.2.1.1.3.0": 42}),
        CheckState(),
    )
    m.lateness.observe(0.003)
    res = promtool(generate_latest(registry).decode())
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr
