"""Soak: `nocd run` with N sip_options checks against a lossy SIP responder for M minutes.

    python -m tests.reliability.soak --checks 10000 --minutes 30 --drop 0.005

The daemon runs as systemd would run it (`nocd run -c FILE`, NOTIFY_SOCKET and
WATCHDOG_USEC set; the WATCHDOG=1 pings are recorded). The responder
(`python -m checks.sip.responder`) runs in its own process on 127.0.0.1 and drops `--drop`
of its replies (seeded). Every check is healthy, so any hard failure or incident is false.
Sampled: the daemon's RSS and CPU (/proc) every `--sample` s; its /metrics every 15 s, as a
Prometheus would (hard transitions, incidents, probe failures, scheduler lateness, event-loop
lag; `--scrape` changes the period: nocd renders /metrics on its loop, so scrapes show in the
lag). The loop thread's run-queue wait (/proc/PID/schedstat) tells a loop stalled by nocd's
own work from one the machine gave no CPU; `windows` compares the two per scrape. Growth, CPU, lateness and lag are measured from the end of the warm-up (default 5 min,
at most a third of the run): the first interval creates every check's state and the flap
history fills over the first 20 probes, which is start-up, not a leak.
Prints a JSON report; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp

from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"growth_pct": 10.0, "loop_lag_p99_s": 0.050}
_TICK = os.sysconf("SC_CLK_TCK")


def config_text(work: Path, listen: int, sip_port: int, n: int, interval: float) -> str:
    """N sip_options checks to the responder; retries, timeout, T1 at their defaults."""
    checks = "\n".join(
        f'  - {{name: soak-{i:05d}, type: sip_options, target: "sip:127.0.0.1:{sip_port}",'
        f" interval: {interval:g}s}}"
        for i in range(n)
    )
    return f"""daemon:
  listen: 127.0.0.1:{listen}
  state_path: {work}/state/nocd.db
  log_format: json
  log_level: info
checks:
{checks}
"""


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def load1() -> float:
    """The machine's 1-minute load average (other engineers' tests share the 2 cores)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def runq_wait_s(pid: int) -> float:
    """Seconds the main thread (the event loop's) was runnable but waiting for a CPU.

    From /proc/PID/schedstat: it tells a loop stalled by nocd's own work (CPU spent) from
    one stalled because the machine gave it no CPU (time on the run queue)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def sample(pid: int) -> dict[str, float]:
    """One sample of the daemon and the machine."""
    return {
        "t": time.monotonic(),
        "rss": rss_mib(pid),
        "cpu": cpu_s(pid),
        "runq": runq_wait_s(pid),
        "load": load1(),
    }


class WatchdogRecorder:
    """The NOTIFY_SOCKET end: a thread records WATCHDOG=1 arrival times (monotonic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pings: list[float] = []
        self.ready = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                lines = self._sock.recv(4096).decode(errors="replace").splitlines()
            except TimeoutError:
                continue
            self.ready = self.ready or "READY=1" in lines
            if "WATCHDOG=1" in lines:
                self.pings.append(time.monotonic())

    def max_gap(self, since: float) -> float:
        """The longest silence between pings after `since` (systemd kills at 30 s)."""
        times = [t for t in self.pings if t >= since]
        return max((b - a for a, b in pairwise(times)), default=0.0)

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def parse_metrics(text: str) -> dict[str, Any]:
    """The few series the soak needs, from the exposition text (cheap at 50,000 lines)."""
    out: dict[str, Any] = {
        "probes": 0.0,
        "failures": {},
        "down": 0.0,
        "transitions": {},
        "incidents": 0.0,
        "checks_down": [],
        "lateness": {},
        "lag": {},
        "lag_max": 0.0,
    }
    for line in text.splitlines():
        if not line.startswith("nocd_"):
            continue
        name_labels, _, value_s = line.rpartition(" ")
        value = float(value_s)
        name, _, labels = name_labels.partition("{")
        if name == "nocd_check_probes_total":
            out["probes"] += value
        elif name == "nocd_check_failures_total":
            cls = labels.split('failure="', 1)[1].split('"', 1)[0]
            out["failures"][cls] = out["failures"].get(cls, 0.0) + value
        elif name == "nocd_state_transitions_total":
            kind = labels.split('kind="', 1)[1].split('"', 1)[0]
            out["transitions"][kind] = value
            if kind == "down":
                out["down"] += value
        elif name == "nocd_incidents_opened_total":
            out["incidents"] += value
        elif name == "nocd_check_up" and value == 0.0:
            out["checks_down"].append(labels.split('"', 2)[1])
        elif name in (
            "nocd_scheduler_lateness_seconds_bucket",
            "nocd_event_loop_lag_seconds_bucket",
        ):
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            key = "lateness" if "lateness" in name else "lag"
            out[key][float(le)] = value
        elif name == "nocd_event_loop_lag_max_seconds":
            out["lag_max"] = value
    return out


def quantile(end: dict[float, float], start: dict[float, float], q: float) -> tuple[float, float]:
    """(estimate, bucket bound) of the q-quantile of the observations between two scrapes;
    the estimate interpolates inside the bucket as Prometheus' histogram_quantile does."""
    bounds = sorted(end)
    cum = [end[b] - start.get(b, 0.0) for b in bounds]
    if not cum or cum[-1] <= 0:
        return float("nan"), float("nan")
    rank = q * cum[-1]
    lower, below = 0.0, 0.0
    for bound, c in zip(bounds, cum, strict=True):
        if c >= rank:
            if bound == float("inf"):
                return lower, bound
            inside = c - below
            frac = (rank - below) / inside if inside else 1.0
            return lower + (bound - lower) * frac, bound
        lower, below = bound, c
    return lower, float("inf")


def top_bucket(end: dict[float, float], start: dict[float, float]) -> float:
    """The upper bound of the highest bucket that gained an observation (a max's bound)."""
    bounds = sorted(end)
    prev = 0.0
    top = 0.0
    for b in bounds:
        gained = (end[b] - start.get(b, 0.0)) - prev
        if gained > 0:
            top = b
        prev = end[b] - start.get(b, 0.0)
    return top


def slope_mib_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares RSS trend over (monotonic s, MiB) samples."""
    if len(samples) < 3:
        return float("nan")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return cov / var * 3600 if var else float("nan")


def daemon_command() -> list[str]:
    """The installed `nocd` entry point next to this Python (as the unit's ExecStart)."""
    script = Path(sys.executable).parent / "nocd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nocd"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


async def _scrape(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    t = time.monotonic()
    async with http.get(
        f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=30)
    ) as resp:
        resp.raise_for_status()
        text = await resp.text()
    # Wall time to the whole body: nocd renders it on its event loop, so this is also how
    # long one scrape held the loop (plus the wait for a CPU on a busy machine).
    return parse_metrics(text) | {"scrape_s": time.monotonic() - t, "bytes": len(text)}


async def _ready(http: aiohttp.ClientSession, port: int, proc: Any, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.returncode is None:
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                if resp.status == 200:
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    return False


def _log_levels(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with path.open(errors="replace") as f:
        for line in f:
            try:
                level = str(json.loads(line).get("level", "?"))
            except (ValueError, AttributeError):
                level = "unparsed"
            counts[level] = counts.get(level, 0) + 1
    return counts


async def run_soak(
    work: Path,
    checks: int,
    minutes: float,
    drop: float,
    *,
    interval: float = 30.0,
    warmup: float | None = None,
    sample_every: float = 5.0,
    scrape_every: float = 15.0,
    seed: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Run one soak and return its report (see the module docstring)."""
    run_s = minutes * 60
    warm_s = min(300.0, run_s / 3) if warmup is None else warmup
    (work / "state").mkdir(parents=True, exist_ok=True)
    responder = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "checks.sip.responder", "--no-tcp"],
        *["--drop-ratio", str(drop), "--seed", str(seed)],
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=_env(),
    )
    assert responder.stdout is not None
    sip_port = int(json.loads(await asyncio.wait_for(responder.stdout.readline(), 30))["udp_port"])
    listen = free_port()
    cfg = work / "nocd.yaml"
    cfg.write_text(config_text(work, listen, sip_port, checks, interval))
    watchdog = WatchdogRecorder(work / "notify.sock")
    log = work / "nocd.log"
    with log.open("wb") as out:
        daemon = await asyncio.create_subprocess_exec(
            *daemon_command(),
            *["run", "-c", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=_env(NOTIFY_SOCKET=str(watchdog.path), WATCHDOG_USEC="30000000"),
        )
    started = time.monotonic()
    samples: list[dict[str, float]] = []
    scrapes: list[tuple[float, dict[str, Any]]] = []
    seen_down: set[str] = set()
    report: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            if not await _ready(http, listen, daemon, 300):
                log_tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nocd did not become ready; {log} ends:\n{log_tail}")
            t0 = time.monotonic()
            report["startup_s"] = round(t0 - started, 1)
            warm: dict[str, Any] | None = None
            next_scrape = next_progress = t0
            while (now := time.monotonic()) < t0 + run_s and daemon.returncode is None:
                samples.append(sample(daemon.pid))
                due_warm = warm is None and now >= t0 + warm_s
                if now >= next_scrape or due_warm:
                    scrapes.append((now, await _scrape(http, listen) | {"at": samples[-1]}))
                    seen_down.update(scrapes[-1][1]["checks_down"])
                    next_scrape = now + scrape_every
                if due_warm:
                    warm = {"sample": samples[-1], "scrape": scrapes[-1][1]}
                if progress and now >= next_progress and scrapes:
                    m = scrapes[-1][1]
                    print(
                        f"[soak {(now - t0) / 60:5.1f} min] rss {samples[-1]['rss']:.1f} MiB,"
                        f" probes {m['probes']:.0f}, failures {sum(m['failures'].values()):.0f},"
                        f" down {m['down']:.0f}, incidents {m['incidents']:.0f},"
                        f" lag max {m['lag_max'] * 1000:.0f} ms, load {samples[-1]['load']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
                    next_progress = now + 60
                await asyncio.sleep(sample_every)
            alive = daemon.returncode is None
            if alive:
                samples.append(sample(daemon.pid))
                scrapes.append(
                    (time.monotonic(), await _scrape(http, listen) | {"at": samples[-1]})
                )
                seen_down.update(scrapes[-1][1]["checks_down"])
            responder_cpu = cpu_s(responder.pid) if responder.returncode is None else float("nan")
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            exit_code: int | None = await asyncio.wait_for(daemon.wait(), 60)
        except TimeoutError:
            daemon.kill()
            exit_code = await daemon.wait()
        if responder.returncode is None:
            responder.send_signal(signal.SIGTERM)
        try:
            tail, _ = await asyncio.wait_for(responder.communicate(), 30)
        except TimeoutError:
            responder.kill()
            tail = b""
        watchdog.close()
    counts = json.loads(tail.decode().strip().splitlines()[-1]) if tail.strip() else {}
    report.update(
        summarize(samples, scrapes, warm, counts, seen_down, checks, interval, run_s, warm_s)
    )
    report.update(
        checks=checks,
        minutes=minutes,
        interval_s=interval,
        scrape_every_s=scrape_every,
        drop_ratio=drop,
        seed=seed,
        responder_cpu_s=round(responder_cpu, 1),
        daemon_alive_to_the_end=alive,
        daemon_exit_code=exit_code,
        watchdog_max_gap_s=round(watchdog.max_gap(t0), 2),
        daemon_log_levels=_log_levels(log),
    )
    report["missed"] = missed(report)
    report["pass"] = not report["missed"]
    return report


def summarize(
    samples: list[dict[str, float]],
    scrapes: list[tuple[float, dict[str, Any]]],
    warm: dict[str, Any] | None,
    counts: dict[str, int],
    seen_down: set[str],
    checks: int,
    interval: float,
    run_s: float,
    warm_s: float,
) -> dict[str, Any]:
    """The figures: whole run and from the end of the warm-up to the end."""
    first, last = samples[0], samples[-1]
    end = scrapes[-1][1]
    w = warm or {"sample": first, "scrape": scrapes[0][1]}
    ws, wm = w["sample"], w["scrape"]
    span = max(1e-9, last["t"] - ws["t"])
    lag_p99, lag_bound = quantile(end["lag"], wm["lag"], 0.99)
    late_p99, late_bound = quantile(end["lateness"], wm["lateness"], 0.99)
    loads = [s["load"] for s in samples]
    steady = [(s["t"], s["rss"]) for s in samples if s["t"] >= ws["t"]]
    probes = int(end["probes"])
    return {
        "run_s": round(last["t"] - first["t"], 1),
        "warmup_s": warm_s,
        "measured_from_warmup": warm is not None,
        "replies_dropped": counts.get("dropped"),
        "responder": counts,
        "probes": probes,
        "probes_expected": int(checks * run_s / interval),
        # Requests the responder saw beyond one per probe: mostly RFC 3261 retransmissions
        # after a lost reply (nocd exports no retransmission count), +/- probes in flight
        # at the edges of the run.
        "extra_requests": counts.get("received", probes) - probes,
        "probe_failures_absorbed": {k: int(v) for k, v in end["failures"].items()},
        "false_hard_failures": int(end["down"]),
        "checks_seen_down": sorted(seen_down)[:20],
        # flap_start/stop too: a young check (5-20 results) that fails once is "flapping",
        # which suppresses its pages until its history fills with successes.
        "state_transitions": {k: int(v) for k, v in end["transitions"].items() if v},
        "incidents_opened": int(end["incidents"]),
        "rss_mib": {
            "ready": round(first["rss"], 1),
            "after_warmup": round(ws["rss"], 1),
            "end": round(last["rss"], 1),
            "peak": round(max(s["rss"] for s in samples), 1),
        },
        "rss_growth_pct": round(100 * (last["rss"] - ws["rss"]) / ws["rss"], 2),
        "rss_trend_mib_per_hour": round(slope_mib_per_hour(steady), 2),
        "loop_lag_ms": {
            "p99": round(lag_p99 * 1000, 1),
            "p99_bucket_le": lag_bound * 1000,
            "max_bucket_le": top_bucket(end["lag"], wm["lag"]) * 1000,
            "max_since_start": round(end["lag_max"] * 1000, 1),
            "p99_whole_run": round(quantile(end["lag"], {}, 0.99)[0] * 1000, 1),
            "samples": int(end["lag"].get(float("inf"), 0) - wm["lag"].get(float("inf"), 0)),
        },
        "lateness_ms": {
            "p99": round(late_p99 * 1000, 1),
            "p99_bucket_le": late_bound * 1000,
            "p99_whole_run": round(quantile(end["lateness"], {}, 0.99)[0] * 1000, 1),
        },
        "scrape_ms": {
            "median": round(statistics.median(m["scrape_s"] for _, m in scrapes) * 1000),
            "max": round(max(m["scrape_s"] for _, m in scrapes) * 1000),
            "bytes": end["bytes"],
        },
        "cpu_pct_of_a_core": round(100 * (last["cpu"] - ws["cpu"]) / span, 1),
        "runq_wait_pct": round(100 * (last["runq"] - ws["runq"]) / span, 1),
        "windows": windows([m for _, m in scrapes if m["at"]["t"] >= ws["t"]]),
        "cpu_pct_whole_run": round(
            100 * (last["cpu"] - first["cpu"]) / max(1e-9, last["t"] - first["t"]), 1
        ),
        "load1": {
            "min": min(loads),
            "mean": round(sum(loads) / len(loads), 2),
            "max": max(loads),
        },
    }


def windows(scrapes: list[dict[str, Any]]) -> dict[str, Any]:
    """Scrape-to-scrape windows: where the loop lag p99 passed 50 ms, was the daemon busy
    (its CPU) or starved (its loop thread waiting on the run queue for a CPU)?"""
    rows = []
    for a, b in pairwise(scrapes):
        dt = max(1e-9, b["at"]["t"] - a["at"]["t"])
        rows.append(
            (
                quantile(b["lag"], a["lag"], 0.99)[0],
                100 * (b["at"]["cpu"] - a["at"]["cpu"]) / dt,
                100 * (b["at"]["runq"] - a["at"]["runq"]) / dt,
                b["at"]["load"],
            )
        )
    over = [r for r in rows if r[0] > TARGETS["loop_lag_p99_s"]]
    rest = [r for r in rows if not r[0] > TARGETS["loop_lag_p99_s"]]

    def med(xs: list[float]) -> float | None:
        return round(statistics.median(xs), 1) if xs else None

    return {
        "count": len(rows),
        "lag_p99_over_50ms": len(over),
        "when_over": {
            "cpu_pct": med([r[1] for r in over]),
            "runq_wait_pct": med([r[2] for r in over]),
            "load1": med([r[3] for r in over]),
        },
        "otherwise": {
            "cpu_pct": med([r[1] for r in rest]),
            "runq_wait_pct": med([r[2] for r in rest]),
            "load1": med([r[3] for r in rest]),
        },
    }


def missed(r: dict[str, Any]) -> list[str]:
    """The targets this run missed (empty: all met)."""
    out = []
    if r["false_hard_failures"] or r["checks_seen_down"]:
        out.append(f"false hard failures: {r['false_hard_failures']} {r['checks_seen_down']}")
    if r["incidents_opened"]:
        out.append(f"incidents opened: {r['incidents_opened']}")
    if not r["rss_growth_pct"] <= TARGETS["growth_pct"]:
        out.append(f"RSS growth {r['rss_growth_pct']} % > {TARGETS['growth_pct']} %")
    if not r["loop_lag_ms"]["p99"] <= TARGETS["loop_lag_p99_s"] * 1000:
        out.append(f"loop lag p99 {r['loop_lag_ms']['p99']} ms > 50 ms")
    if not r["daemon_alive_to_the_end"] or r["daemon_exit_code"] != 0:
        out.append(f"daemon died or exited {r['daemon_exit_code']}")
    if r["daemon_log_levels"].get("error"):
        out.append(f"{r['daemon_log_levels']['error']} error lines in the daemon's log")
    if r["drop_ratio"] > 0 and not r["replies_dropped"]:
        out.append("the responder dropped nothing: the run proved nothing about loss")
    return out


def _tree() -> str:
    """The commit under test and the files others had modified but not committed yet."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--short", "--", "nocd", "checks"], capture_output=True, text=True
    )
    if head.returncode != 0:  # a `git archive` snapshot: the caller names what it holds
        return os.environ.get("NOCD_SOAK_TREE", "not a git checkout")
    files = " ".join(line[3:] for line in dirty.stdout.splitlines())
    return head.stdout.strip() + (f" + uncommitted: {files}" if files else "")


def main() -> int:
    """CLI: run a soak and print the report as JSON."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--checks", type=int, default=10000)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--drop", type=float, default=0.005, help="share of SIP replies dropped")
    p.add_argument("--interval", type=float, default=30.0, help="check interval, s")
    p.add_argument("--warmup", type=float, default=None, help="s (default min(300, run/3))")
    p.add_argument("--sample", type=float, default=5.0, help="RSS/CPU sampling period, s")
    p.add_argument(
        "--scrape", type=float, default=15.0, help="/metrics scrape period, s (Prometheus')"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="keep config, log, db here")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args()
    tree = _tree()  # what the daemon imports at start (others keep committing meanwhile)
    with tempfile.TemporaryDirectory(prefix="nocd-soak-") as tmp:
        report = asyncio.run(
            run_soak(
                args.work or Path(tmp),
                args.checks,
                args.minutes,
                args.drop,
                interval=args.interval,
                warmup=args.warmup,
                sample_every=args.sample,
                scrape_every=args.scrape,
                seed=args.seed,
                progress=True,
            )
        )
    report["command"] = "python -m tests.reliability.soak " + " ".join(sys.argv[1:])
    report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report["machine"] = f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs"
    report["python"] = platform.python_version()
    report["tree"] = tree
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
