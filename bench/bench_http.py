"""HTTP/TCP probes at a fixed rate: nocd vs blackbox_exporter (+ Prometheus), CPU per 1,000 probes.

Run: .venv/bin/python bench/bench_http.py [--targets 500,2000] [--rate 400] [--duration 60]
         [--repeats 3] [--warmup 8] [--systems nocd,nocd-tcp,blackbox]

Every system probes N distinct URLs on one local aiohttp server that runs in its own process
(its CPU is not counted), at the same total rate (N / interval = --rate probes per second),
with a fresh connection per probe:
- nocd: `nocd run -c FILE` as a subprocess (the whole path: scheduler, http probe, judgement,
  state machine, metrics, SQLite flushes); CPU from /proc/PID/stat (utime+stime), lateness p99
  from its nocd_scheduler_lateness_seconds histogram, RSS from /proc/PID/status;
- nocd-tcp: the same with `tcp` checks (connect + close) to the same server;
- blackbox: prometheus-blackbox-exporter driven by Prometheus (scrape_interval = interval,
  http_2xx module); CPU for blackbox alone and for blackbox + Prometheus.
Probes are counted by the target server itself, so every system is counted the same way.
Traffic goes only to 127.0.0.1; every measurement is bounded by --warmup + --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


# ---- the target server (its own process) -----------------------------------------------


def serve(port: int) -> None:
    """Answer every GET with 200 and count requests; /_count reports and is not counted."""
    from aiohttp import web

    count = 0

    async def any_path(request: web.Request) -> web.Response:
        nonlocal count
        if request.path == "/_count":
            return web.Response(text=str(count))
        count += 1
        return web.Response(text="ok")

    async def conn(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1  # tcp checks: one accepted connection is one probe
        w.close()

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", any_path)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        await asyncio.start_server(conn, "127.0.0.1", port + 1, backlog=4096)
        await asyncio.Event().wait()

    asyncio.run(main())


def free_port(pair: bool = False) -> int:
    """A free port on 127.0.0.1 (with `pair`, port+1 is free too)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def wait_http(url: str, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while True:
        try:
            http_get(url, 2.0)
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


# ---- process accounting -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` from /proc (whole process, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- metrics parsing --------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """`name{labels}` → value from a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in http_get(url, 30.0).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def total(m: dict[str, float], name: str) -> float:
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def lateness_p99(before: dict[str, float], after: dict[str, float]) -> float:
    """p99 upper bound from the histogram's bucket deltas (the bucket holding the 99th)."""
    prefix = "nocd_scheduler_lateness_seconds_bucket{le="
    buckets = []
    for k, v in after.items():
        if k.startswith(prefix):
            le = k[len(prefix) + 1 : -2]
            buckets.append((float(le), v - before.get(k, 0.0)))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0
    for le, cum in buckets:
        if count and cum >= 0.99 * count:
            return le
    return float("nan")


# ---- one measurement --------------------------------------------------------------------


@dataclass
class Sample:
    """One measurement window."""

    system: str
    targets: int
    probes: int
    cpu: dict[str, float]  # process label → CPU-seconds in the window
    seconds: float
    lateness_p99: float | None = None
    rss_mib: dict[str, float] = field(default_factory=dict)
    failures: float = 0.0

    def per_1000(self, *procs: str) -> float:
        return 1000.0 * sum(self.cpu[p] for p in procs) / max(1, self.probes)


class Bench:
    """Holds the target server and runs the measurements."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.port = free_port(pair=True)
        self.server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port)], cwd=ROOT
        )
        wait_http(f"http://127.0.0.1:{self.port}/_count")

    def served(self) -> int:
        return int(http_get(f"http://127.0.0.1:{self.port}/_count"))

    def close(self) -> None:
        stop(self.server)

    def interval(self, n: int) -> float:
        return n / self.args.rate

    def window(
        self, procs: dict[str, int], before_hook: Callable[[], None] | None = None
    ) -> tuple[dict[str, float], int, float]:
        """CPU per process and probes served over --duration seconds."""
        if before_hook:
            before_hook()
        cpu0 = {k: cpu_seconds(p) for k, p in procs.items()}
        served0, t0 = self.served(), time.monotonic()
        time.sleep(self.args.duration)
        cpu1 = {k: cpu_seconds(p) for k, p in procs.items()}
        served1, t1 = self.served(), time.monotonic()
        return {k: cpu1[k] - cpu0[k] for k in procs}, served1 - served0, t1 - t0

    def nocd(self, n: int, kind: str) -> Sample:
        d = Path(tempfile.mkdtemp(dir=self.workdir))
        listen = free_port()
        interval_ms = round(self.interval(n) * 1000)
        lines = [
            "daemon:",
            f"  listen: 127.0.0.1:{listen}",
            f"  state_path: {d / 'nocd.db'}",
            "  log_format: json",
            "checks:",
        ]
        for i in range(n):
            target = (
                f"http://127.0.0.1:{self.port}/t/{i}"
                if kind == "http"
                else f"127.0.0.1:{self.port + 1}"
            )
            lines.append(
                f"  - {{name: t{i}, type: {kind}, target: '{target}', "
                f"interval: {interval_ms}ms, timeout: 1s}}"
            )
        cfg = d / "nocd.yaml"
        cfg.write_text("\n".join(lines) + "\n")
        log = (d / "nocd.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nocd", "run", "-c", str(cfg)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        metrics_url = f"http://127.0.0.1:{listen}/metrics"
        try:
            wait_http(metrics_url)
            time.sleep(self.args.warmup + self.interval(n))  # past the first, spread runs
            before = scrape(metrics_url)
            cpu, probes, secs = self.window({"nocd": proc.pid})
            after = scrape(metrics_url)
            rss = rss_mib(proc.pid)
        finally:
            stop(proc)
            log.close()
        return Sample(
            f"nocd-{kind}",
            n,
            probes,
            cpu,
            secs,
            lateness_p99(before, after),
            {"nocd": rss},
            total(after, "nocd_check_failures_total") - total(before, "nocd_check_failures_total"),
        )

    def blackbox(self, n: int) -> Sample:
        d = Path(tempfile.mkdtemp(dir=self.workdir))
        bb_port, prom_port = free_port(), free_port()
        (d / "blackbox.yml").write_text(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 1s\n"
            "    http:\n      preferred_ip_protocol: ip4\n"
        )
        interval_ms = round(self.interval(n) * 1000)
        targets = [f"http://127.0.0.1:{self.port}/t/{i}" for i in range(n)]
        (d / "prometheus.yml").write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": f"{interval_ms}ms", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "blackbox",
                            "metrics_path": "/probe",
                            "params": {"module": ["http_2xx"]},
                            "static_configs": [{"targets": targets}],
                            "relabel_configs": [
                                {
                                    "source_labels": ["__address__"],
                                    "target_label": "__param_target",
                                },
                                {"source_labels": ["__param_target"], "target_label": "instance"},
                                {
                                    "target_label": "__address__",
                                    "replacement": f"127.0.0.1:{bb_port}",
                                },
                            ],
                        }
                    ],
                }
            )
        )
        log = (d / "peers.log").open("wb")
        bb = subprocess.Popen(
            [
                self.args.blackbox,
                f"--config.file={d / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{bb_port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        prom = subprocess.Popen(
            [
                self.args.prometheus,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        try:
            wait_http(f"http://127.0.0.1:{bb_port}/metrics")
            wait_http(f"http://127.0.0.1:{prom_port}/-/ready")
            time.sleep(self.args.warmup + self.interval(n))
            cpu, probes, secs = self.window({"blackbox": bb.pid, "prometheus": prom.pid})
            rss = {"blackbox": rss_mib(bb.pid), "prometheus": rss_mib(prom.pid)}
        finally:
            stop(prom)
            stop(bb)
            log.close()
        return Sample("blackbox", n, probes, cpu, secs, None, rss)


# ---- report -----------------------------------------------------------------------------


def med_range(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "–"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (
        f"{os.cpu_count()} vCPUs ({model}), {int(mem) / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.platform()}, Python {platform.python_version()}"
    )


def report(samples: list[Sample], args: argparse.Namespace) -> str:
    rows = []
    for n in args.targets:
        for system, procs, label in (
            ("nocd-http", ("nocd",), "nocd, http checks (whole daemon)"),
            ("nocd-tcp", ("nocd",), "nocd, tcp checks (whole daemon)"),
            ("blackbox", ("blackbox",), "blackbox_exporter alone (http_2xx)"),
            ("blackbox", ("blackbox", "prometheus"), "blackbox_exporter + Prometheus"),
        ):
            ss = [s for s in samples if s.system == system and s.targets == n]
            if not ss:
                continue
            rate = [s.probes / s.seconds for s in ss]
            cpu = [s.per_1000(*procs) for s in ss]
            late = [s.lateness_p99 for s in ss if s.lateness_p99 is not None]
            rss = [sum(s.rss_mib[p] for p in procs) for s in ss]
            fails = sum(s.failures for s in ss)
            rows.append(
                f"| {n:,} | {label} | {med_range(rate, '{:.0f}')} | **{med_range(cpu)}** | "
                f"{med_range([x * 1000 for x in late], '≤{:.0f}') if late else '–'} | "
                f"{med_range(rss, '{:.0f}')} | {fails:.0f} |"
            )
    head = (
        "| targets | system | probes/s | CPU-s per 1,000 probes | lateness p99 ms | RSS MiB | "
        "failed probes |\n|---:|---|---:|---:|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--targets", default="500,2000")
    p.add_argument("--rate", type=float, default=400.0, help="probes per second, every size")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--systems", default="nocd-http,nocd-tcp,blackbox")
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return
    args.targets = [int(x) for x in args.targets.split(",")]
    systems = args.systems.split(",")
    args.blackbox = shutil.which("prometheus-blackbox-exporter")
    args.prometheus = shutil.which("prometheus")
    if "blackbox" in systems and not (args.blackbox and args.prometheus):
        print("blackbox_exporter or prometheus not installed: skipping them", file=sys.stderr)
        systems.remove("blackbox")
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="nocd-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            for rep in range(args.repeats):
                for n in args.targets:
                    for system in systems:  # interleaved, so drift hits every system alike
                        if system == "blackbox":
                            s = bench.blackbox(n)
                        else:
                            s = bench.nocd(n, system.removeprefix("nocd-"))
                        samples.append(s)
                        print(
                            f"rep {rep + 1} {system:9} n={n:5} probes={s.probes} "
                            f"cpu/1k={ {k: round(1000 * v / max(1, s.probes), 3) for k, v in s.cpu.items()} } "
                            f"late_p99={s.lateness_p99} rss={s.rss_mib} failures={s.failures}",
                            flush=True,
                        )
        finally:
            bench.close()
    print()
    print(f"Machine: {machine()}")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"Command: {' '.join(sys.argv)}")
    print()
    print(report(samples, args))


if __name__ == "__main__":
    main()
