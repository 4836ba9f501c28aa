"""A real Prometheus rule fires on a dead target; a real Alertmanager delivers it to nocd."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from checks import alertmanager as am_check
from nocd.intake.alertmanager import AlertmanagerIntake
from nocd.model import FailureClass, Observation, Severity
from tests.peers import free_port, require_binary

pytestmark = pytest.mark.peer

TOKEN = "am-webhook-token-0123"


def rule() -> am_check.Config:
    return am_check.Config.model_validate(
        {
            "name": "pbx-exporter-down",
            "type": "alertmanager",
            "site": "main-street",
            "matchers": ['alertname="TargetDown"', 'job=~"pbx-.*"'],
        }
    )


class Peers:
    """Prometheus and Alertmanager processes with their own dirs and loopback ports."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str]) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        )
        log.close()

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    p = Peers(tmp_path)
    try:
        yield p
    finally:
        p.stop()


async def wait_ready(url: str, what: str, peers: Peers, name: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(150):
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not ready: {peers.log(name)}")


class Recorder:
    """Collects what the intake submits."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Observation]] = []
        self.changed = asyncio.Event()

    def __call__(self, name: str, obs: Observation) -> None:
        self.items.append((name, obs))
        self.changed.set()

    async def until(self, ok: bool, wait: float) -> Observation:
        async with asyncio.timeout(wait):
            while True:
                for _, obs in self.items:
                    if obs.ok is ok:
                        return obs
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def nocd_webhook() -> AsyncIterator[tuple[TestServer, Recorder, AlertmanagerIntake]]:
    def authorize(request: web.Request, scope: str) -> None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized(text="bad token")

    recorder = Recorder()
    intake = AlertmanagerIntake([rule()], recorder)
    app = web.Application()
    app.add_routes(intake.routes(authorize))
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield server, recorder, intake
    finally:
        await server.close()


async def test_prometheus_alert_reaches_nocd_and_resolves(
    tmp_path: Path,
    peers: Peers,
    nocd_webhook: tuple[TestServer, Recorder, AlertmanagerIntake],
) -> None:
    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager")
    server, recorder, intake = nocd_webhook
    am_port, prom_port, target_port = free_port(), free_port(), free_port()

    (tmp_path / "am.yml").write_text(
        f"""global:
  resolve_timeout: 5s
route:
  receiver: nocd
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: nocd
    webhook_configs:
      - url: http://127.0.0.1:{server.port}/api/v1/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: {TOKEN}
"""
    )
    (tmp_path / "rules.yml").write_text(
        """groups:
  - name: nocd-test
    interval: 1s
    rules:
      - alert: TargetDown
        expr: up{job="pbx-exporter"} == 0
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.instance }} is down"
"""
    )
    (tmp_path / "prometheus.yml").write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{tmp_path / "rules.yml"}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: pbx-exporter
    scrape_timeout: 500ms
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
        labels:
          site: main-street
"""
    )
    peers.spawn(
        "alertmanager",
        [
            alertmanager,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    peers.spawn(
        "prometheus",
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--rules.alert.resend-delay=1s",
        ],
    )
    await wait_ready(f"http://127.0.0.1:{am_port}/-/ready", "alertmanager", peers, "alertmanager")
    await wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", "prometheus", peers, "prometheus")

    try:
        fired = await recorder.until(ok=False, wait=30)
    except TimeoutError:
        raise AssertionError(peers.log("alertmanager") + peers.log("prometheus")) from None
    name = recorder.items[0][0]
    assert name == "pbx-exporter-down"
    assert fired.failure is FailureClass.EXTERNAL
    assert fired.detail == f"TargetDown firing: 127.0.0.1:{target_port} is down"
    assert fired.values["site"] == "main-street"
    verdict = am_check.evaluate(fired, rule())
    assert verdict.severity is Severity.DEGRADED  # severity=warning → degraded

    # The target comes back: Prometheus resolves the alert, Alertmanager sends the resolve.
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="pbx_registered_endpoints 12\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    target = TestServer(app, host="127.0.0.1", port=target_port)
    await target.start_server()
    try:
        recovered = await recorder.until(ok=True, wait=30)
    finally:
        await target.close()
    assert recovered.detail == "TargetDown resolved"
    assert am_check.evaluate(recovered, rule()).ok
    assert intake.rejected == 0 and intake.unmatched == 0
    assert intake.firing == {}
