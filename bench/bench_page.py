"""Failure to page: kill a target among 10,000 checks; time nocd's decision and page request,
and the same kill through blackbox_exporter → Prometheus → Alertmanager → webhook.

Run: .venv/bin/python bench/bench_page.py [--checks 10000] [--kills 10] [--no-prometheus]

nocd runs in-process (the real Daemon: scheduler, pipeline, incident engine, outbox, pager,
the official twilio client) with `--checks` sip_options checks against a SipResponder in a
subprocess, plus, per victim, tcp checks to a local listener the bench closes (the kill):
- `r1`: retries 1 (a single failed probe is hard, like a Prometheus rule with `for: 0s`);
- `r3`: nocd's default retries 3 (confirmed by 2 re-probes at the retry interval);
each at interval 5 s and 15 s, each in its own site with its own on-call person (so pages
are neither grouped nor rate-limited across variants). Pages go to tests/fakes/twilio_fake.
Victims are killed 1.3 s apart. Measured per check: kill → hard decision (the "check down" transition), decision → first
Calls request at the fake Twilio, kill → that request.
Prometheus: one blackbox_exporter (tcp_connect) probes every victim; two Prometheus +
Alertmanager pairs, "default" (scrape/eval 15 s, group_wait 30 s) and "tuned" (5 s, 5 s,
group_wait 0), rule `probe_success == 0` with `for: 0s`; kill → webhook POST received.
Traffic only to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SID = "AC" + "0" * 31 + "7"
TOKEN = "bench-page-token-0123456789"
STAGGER = 1.3  # seconds between kills
PHONES: dict[str, str] = {}  # each (victim, variant) has its own on-call number
VARIANTS = {"r1-5s": (1, 5), "r3-5s": (3, 5), "r1-15s": (1, 15), "r3-15s": (3, 15)}


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nocd_yaml(tmp: Path, n: int, sip_port: int, victims: list[int]) -> str:
    """The daemon's config: n SIP checks in one site, tcp victims each in their own site."""
    lines = [
        "daemon:",
        f"  listen: 127.0.0.1:{free_port()}",
        "  public_url: https://noc.example.com",
        f"  state_path: {tmp}/nocd.db",
        "  log_level: warning",
        "  log_format: json",
        "  max_concurrency: 5000",
        "support_hours:",
        "  never: {timezone: UTC}",  # no open hours: every critical pages now
        "sites:",
        "  bulk: {name: Bulk, timezone: UTC}",
    ]
    sites: list[str] = []
    people: list[str] = []
    policies: list[str] = []
    routes: list[str] = []
    checks: list[str] = []
    for k, port in enumerate(victims):
        for v, (retries, interval) in VARIANTS.items():
            key = f"v{k}-{v}"
            sites.append(f"  {key}: {{name: {key}, timezone: UTC}}")
            PHONES[f"+155501{len(people):02d}"] = key
            people.append(f'    p-{key}: {{name: P {key}, phone: "+155501{len(people):02d}"}}')
            policies.append(
                f"    pol-{key}: {{steps: [{{people: [p-{key}], channels: [voice], wait: 10m}}]}}"
            )
            routes.append(f"      {key}: {{support_hours: never, escalation_policy: pol-{key}}}")
            checks.append(
                f"  - {{name: {key}, type: tcp, target: '127.0.0.1:{port}', site: {key},"
                f" interval: {interval}s, timeout: 2s, retries: {retries}}}"
            )
    for i in range(n):
        checks.append(
            f"  - {{name: sip-{i}, type: sip_options, target: 'sip:127.0.0.1:{sip_port}',"
            f" site: bulk, interval: 30s, timeout: 5s}}"
        )
    return "\n".join(
        [
            *lines,
            *sites,
            "paging:",
            "  provider:",
            "    type: twilio",
            "    account_sid: ${NOCD_BENCH_SID}",
            "    auth_token: ${NOCD_BENCH_TOKEN}",
            '    from_number: "+15550100"',
            "  rate_limits: {voice: 100, sms: 100}",
            "  people:",
            *people,
            "  escalation_policies:",
            *policies,
            "  routing:",
            "    default: {support_hours: never}",
            "    sites:",
            *routes,
            "checks:",
            *checks,
            "",
        ]
    )


class Victim:
    """A TCP listener a check probes; `kill()` closes it so connects are refused."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen on an ephemeral loopback port; accepted connections are closed at once."""

        async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def kill(self) -> None:
        """Stop listening (RST for every later connect)."""
        if self.server is not None:
            self.server.close()


# ---- Prometheus pipeline ---------------------------------------------------------------


class PromStack:
    """blackbox_exporter + two Prometheus/Alertmanager pairs + a webhook receiver."""

    SETUPS: ClassVar[dict[str, tuple[int, int, str]]] = {
        "default": (15, 15, "30s"),
        "tuned": (5, 5, "0s"),
    }

    def __init__(self, tmp: Path, victims: list[int]) -> None:
        self.tmp, self.victims = tmp, victims
        self.procs: list[subprocess.Popen[bytes]] = []
        self.received: dict[str, dict[str, float]] = {s: {} for s in self.SETUPS}
        self.runner: Any = None

    async def start(self) -> None:
        """Start the receiver, blackbox, and per setup an Alertmanager and a Prometheus."""
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            t = time.perf_counter()
            body = await request.json()
            setup = request.match_info["setup"]
            for alert in body.get("alerts", []):
                inst = alert["labels"].get("instance", "")
                if alert.get("status") == "firing":
                    self.received[setup].setdefault(inst, t)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook/{setup}", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        hook_port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", hook_port).start()
        bb_port = free_port()
        bb_cfg = self.tmp / "blackbox.yml"
        bb_cfg.write_text("modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n")
        self._spawn(
            [
                "prometheus-blackbox-exporter",
                f"--config.file={bb_cfg}",
                f"--web.listen-address=127.0.0.1:{bb_port}",
            ]
        )
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in self.victims)
        for setup, (scrape, evaluation, group_wait) in self.SETUPS.items():
            d = self.tmp / setup
            d.mkdir()
            am_port, prom_port = free_port(), free_port()
            (d / "am.yml").write_text(
                "route:\n  receiver: hook\n  group_by: [instance]\n"
                f"  group_wait: {group_wait}\n  group_interval: 5m\n  repeat_interval: 4h\n"
                f"receivers:\n  - name: hook\n    webhook_configs:\n"
                f"      - url: http://127.0.0.1:{hook_port}/hook/{setup}\n"
            )
            self._spawn(
                [
                    "prometheus-alertmanager",
                    f"--config.file={d / 'am.yml'}",
                    f"--storage.path={d / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ]
            )
            (d / "rules.yml").write_text(
                "groups:\n  - name: bench\n    rules:\n      - alert: TargetDown\n"
                "        expr: probe_success == 0\n        for: 0s\n"
            )
            (d / "prom.yml").write_text(
                f"global:\n  scrape_interval: {scrape}s\n  evaluation_interval: {evaluation}s\n"
                f"rule_files: ['{d / 'rules.yml'}']\n"
                f"alerting:\n  alertmanagers:\n    - static_configs:\n"
                f"        - targets: ['127.0.0.1:{am_port}']\n"
                "scrape_configs:\n  - job_name: blackbox\n    metrics_path: /probe\n"
                "    params: {module: [tcp_connect]}\n"
                f"    static_configs:\n      - targets: [{targets}]\n"
                "    relabel_configs:\n"
                "      - {source_labels: [__address__], target_label: __param_target}\n"
                "      - {source_labels: [__param_target], target_label: instance}\n"
                f"      - {{target_label: __address__, replacement: '127.0.0.1:{bb_port}'}}\n"
            )
            self._spawn(
                [
                    "prometheus",
                    f"--config.file={d / 'prom.yml'}",
                    f"--storage.tsdb.path={d / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ]
            )

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.tmp / f"{Path(argv[0]).name}-{len(self.procs)}.log", "wb")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    async def stop(self) -> None:
        """Terminate every process (bounded) and the receiver."""
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.runner is not None:
            await self.runner.cleanup()


# ---- the run ---------------------------------------------------------------------------


class Stamps(list[Any]):
    """The fake Twilio's request list, stamping when each request arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.perf_counter())
        super().append(item)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, kill victims one by one, collect the timings."""
    import bench_daemon_sip

    from nocd.configload import load_text
    from nocd.daemon import Daemon
    from nocd.sdnotify import Notifier
    from tests.fakes.twilio_fake import FakeTwilio

    tmp = Path(tempfile.mkdtemp(prefix="bench-page-"))
    os.environ["NOCD_BENCH_SID"], os.environ["NOCD_BENCH_TOKEN"] = SID, TOKEN
    proc, sip_port = bench_daemon_sip.start_responder(tmp)
    victims = [Victim() for _ in range(args.kills)]
    for v in victims:
        await v.start()
    ports = [v.port for v in victims]
    prom = None
    if args.prometheus:
        prom = PromStack(tmp, ports)
        await prom.start()
    fake = FakeTwilio(
        SID, TOKEN, public_url="https://noc.example.com", webhook_base="http://127.0.0.1:9"
    )
    await fake.__aenter__()
    fake.requests = Stamps()
    cfg = load_text(nocd_yaml(tmp, args.checks, sip_port, ports), "bench.yaml")
    d = Daemon(cfg, notifier=Notifier(environ={}), twilio_base_url=fake.base_url)
    await d.start()
    assert d.pipeline is not None
    decided: dict[str, float] = {}
    orig = d.pipeline._log_transition

    def on_transition(c: Any, t: Any, verdict: Any) -> None:
        if t.kind.value == "down":
            decided.setdefault(c.name, time.perf_counter())
        orig(c, t, verdict)

    d.pipeline._log_transition = on_transition  # type: ignore[method-assign,assignment]
    rows: list[dict[str, Any]] = []
    lags: list[float] = []

    async def lag_probe() -> None:
        # Event-loop lag while the kills are paged: a 50 ms sleep's overshoot. Decision →
        # page request can be no faster than the loop that runs it (shared 2-core machine).
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - t - 0.05)

    lag_task: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(args.warmup)  # every check has run; Prometheus scraped a few times
        lag_task = asyncio.create_task(lag_probe())
        # Victims die 1.3 s apart (not a divisor of 5 or 15 s), so the kills land at different
        # phases of Prometheus' scrape and evaluation cycles as well as of nocd's schedule;
        # each has its own checks, sites, people and Prometheus alert group.
        killed_at: list[float] = []
        for victim in victims:
            killed_at.append(time.perf_counter())
            victim.kill()
            await asyncio.sleep(STAGGER)
        insts = [f"127.0.0.1:{v.port}" for v in victims]
        names = [f"v{k}-{v}" for k in range(len(victims)) for v in VARIANTS]
        # Bounded: a 15 s interval + 2 retries at 5 s + a 15/15/30 s Prometheus ≈ 70 s.
        end = time.perf_counter() + 100
        while time.perf_counter() < end:
            pages = _pages(fake)
            done = all(n in pages for n in names)
            if prom is not None:
                done = done and all(i in prom.received[s] for s in prom.SETUPS for i in insts)
            if done:
                break
            await asyncio.sleep(0.01)
        pages = _pages(fake)
        for n in names:
            killed = killed_at[int(n.split("-", 1)[0][1:])]
            dec, page = decided.get(n), pages.get(n)
            rows.append(
                {
                    "system": f"nocd {n.split('-', 1)[1]}",
                    "kill_to_decision": None if dec is None else dec - killed,
                    "decision_to_page": None if dec is None or page is None else page - dec,
                    "kill_to_page": None if page is None else page - killed,
                }
            )
        if prom is not None:
            for s in prom.SETUPS:
                for inst, killed in zip(insts, killed_at, strict=True):
                    got = prom.received[s].get(inst)
                    rows.append(
                        {
                            "system": f"prometheus {s}",
                            "kill_to_decision": None,
                            "decision_to_page": None,
                            "kill_to_page": None if got is None else got - killed,
                        }
                    )
    finally:
        if lag_task is not None:
            lag_task.cancel()
        await d.stop()
        await fake.__aexit__()
        if prom is not None:
            await prom.stop()
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"rows": rows, "lags": lags}


def _pages(fake: Any) -> dict[str, float]:
    """First Calls request time per victim check (the person's number maps back to it)."""
    out: dict[str, float] = {}
    for rec, t in zip(fake.requests, fake.requests.times, strict=False):
        if rec.method == "POST" and rec.path.endswith("/Calls.json"):
            key = PHONES.get(str(rec.form.get("To", "")))
            if key is not None:
                out.setdefault(key, t)
    return out


def main() -> None:
    """Parse arguments, run, print a Markdown summary (median, min–max, p99 of each column)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=10000)
    ap.add_argument("--kills", type=int, default=10, help="victims killed at once, at most 25")
    ap.add_argument("--warmup", type=float, default=40.0)
    ap.add_argument("--no-prometheus", dest="prometheus", action="store_false")
    ap.add_argument("--json", help="also write every row (and the loop lags) to this file")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, {args.checks} checks,"
        f" {args.kills} kills"
    )
    print("| system | kill → decision s | decision → page request s | kill → page s |")
    print("|---|---|---|---|")
    for system in dict.fromkeys(r["system"] for r in res["rows"]):
        cells = []
        for col in ("kill_to_decision", "decision_to_page", "kill_to_page"):
            vals = [r[col] for r in res["rows"] if r["system"] == system and r[col] is not None]
            miss = sum(1 for r in res["rows"] if r["system"] == system and r[col] is None)
            if not vals:
                cells.append("–" if col != "kill_to_page" else f"none ({miss} missed)")
                continue
            cells.append(
                f"{statistics.median(vals):.3f} ({min(vals):.3f}–{max(vals):.3f})"
                + (f", {miss} missed" if miss else "")
            )
        print(f"| {system} | " + " | ".join(cells) + " |")
    d2p = sorted(r["decision_to_page"] for r in res["rows"] if r["decision_to_page"] is not None)
    if d2p:
        p99 = d2p[min(len(d2p) - 1, int(0.99 * len(d2p)))]
        print(f"\nnocd decision → page request, all variants: n={len(d2p)}, p99 {p99:.3f} s")
    lags = sorted(res["lags"])
    if lags:
        p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        print(
            f"event-loop lag while paging: median {statistics.median(lags) * 1000:.0f} ms,"
            f" p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
