"""SIP OPTIONS capacity through the whole daemon (nocd.daemon.Daemon in-process), per interval.

Run: .venv/bin/python bench/bench_daemon_sip.py [--targets 20000,50000] [--interval 30]
         [--intervals 3] [--repeats 1] [--warm] [--bare] [--profile FILE]

The real Daemon (store, pipeline, incident engine, paging loop, HTTP listener, metrics) runs
N `sip_options` checks against nocd's SipResponder in a subprocess (its CPU not counted).
CPU (getrusage, all threads), probes, loss, RTT and scheduling lateness are reported *per
interval*: interval 1 is start-up (first states written, every check's first run spread by
its name's hash); later intervals are steady state. `--warm` seeds the store with healthy
states with a full flap history first, as after a restart of a daemon that ran for a while
(a fresh check's state still changes on each of its first 20 probes, as the history fills).
`--bare` adds the floor: a minimal asyncio OPTIONS loop at the same rate in the same process
kind, measured right before and right after, so ratios compare like with like on a noisy VM
(the ratio line: median daemon interval / mean of the two floors).
`BENCH_STALLS=1` prints the loop thread's stack whenever the loop stops turning for 0.2 s.
Traffic goes only to 127.0.0.1; every run is bounded by intervals x interval + 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on the UDP sockets bound to `port` (full receive buffer)."""
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                total += int(cols[-1])
    return total


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def start_responder(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Run the SipResponder in its own process; returns (process, UDP port)."""
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_sip.py"),
            "--serve",
            str(port_file),
            str(tmp / "cpu"),
        ],
        stdin=subprocess.PIPE,
    )
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            return proc, int(port_file.read_text())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("responder did not start")


TICK: float | None = None  # daemon.tick (None: the config default); --tick changes it


def build_config(n: int, port: int, interval: float, state: Path) -> Any:
    """A Config with n sip_options checks to the local responder (no YAML: that is startup's)."""
    from nocd.config import Config

    daemon: dict[str, Any] = {"listen": "127.0.0.1:0", "state_path": str(state)}
    if TICK is not None:
        daemon["tick"] = TICK
    return Config.model_validate(
        {
            "daemon": daemon,
            "checks": [
                {
                    "name": f"bench-{i}",
                    "type": "sip_options",
                    "target": f"sip:127.0.0.1:{port}",
                    "interval": interval,
                    "timeout": 5,
                }
                for i in range(n)
            ],
        }
    )


class StallDumper:
    """Prints where the event loop's thread is when the loop has not turned for `limit` s.

    A loop callback stamps the time every 10 ms; a watcher thread samples the loop thread's
    stack while the stamp is stale, so a start-up stall names the code that holds the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float = 0.2) -> None:
        self._loop, self._limit = loop, limit
        self._stamp = time.monotonic()
        self._thread_id = threading.get_ident()
        self._stop = threading.Event()
        self._loop.call_soon(self._beat)
        threading.Thread(target=self._watch, daemon=True).start()

    def _beat(self) -> None:
        self._stamp = time.monotonic()
        if not self._stop.is_set():
            self._loop.call_later(0.01, self._beat)

    def _watch(self) -> None:
        reported = 0.0
        while not self._stop.wait(0.05):
            stale = time.monotonic() - self._stamp
            if stale > self._limit and self._stamp != reported:
                reported = self._stamp
                # Every thread: the loop's may only be waiting for the GIL held by another.
                for ident, frame in sys._current_frames().items():
                    if ident == threading.get_ident():
                        continue
                    where = "".join(traceback.format_stack(frame)[-8:])
                    who = "loop thread" if ident == self._thread_id else f"thread {ident}"
                    print(f"loop stalled {stale:.2f} s; {who} at:\n{where}", file=sys.stderr)

    def stop(self) -> None:
        """End the watcher."""
        self._stop.set()


async def seed_states(state: Path, n: int) -> None:
    """Write healthy states with a full 20-result history, as a long-running daemon leaves."""
    from nocd.state import CheckState
    from nocd.store import Store

    store = await Store.open(state)
    text = CheckState(since=1.0, history="1" * 20).to_json()
    async with store.transaction() as conn:
        await conn.executemany(
            "INSERT INTO check_state (check_name, state, updated_at) VALUES (?, ?, ?)",
            [(f"bench-{i}", text, 1.0) for i in range(n)],
        )
    await store.close()


async def run_daemon(
    n: int, port: int, interval: float, intervals: int, warm: bool, profile: str | None
) -> list[dict[str, Any]]:
    """Run the Daemon for `intervals` intervals; one result row per interval."""
    from nocd.daemon import Daemon

    loop = asyncio.get_running_loop()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "nocd.db"
        if warm:
            await seed_states(state, n)
        cfg = build_config(n, port, interval, state)
        d = Daemon(cfg)
        dumper = StallDumper(loop) if os.environ.get("BENCH_STALLS") else None
        cpu0, t0, rss0 = cpu_s(), loop.time(), rss_mib()
        await d.start()
        startup = {"start_s": loop.time() - t0, "start_cpu_s": cpu_s() - cpu0}
        sched = d.scheduler
        assert sched is not None
        late: list[float] = []
        rtts: list[float] = []
        counts = {"done": 0, "failed": 0}
        orig_late = sched._observe_lateness
        orig_result = sched._on_result

        stalls: dict[int, float] = {}  # second of the run → worst lateness in it (> 50 ms)

        def on_late(x: float) -> None:
            late.append(x)
            if x > 0.05:
                sec = int(loop.time() - t0)
                stalls[sec] = max(stalls.get(sec, 0.0), x)
            orig_late(x)

        def on_result(cfg: Any, obs: Any, lateness: float) -> float | None:
            counts["done"] += 1
            if obs.ok:
                rtts.append(obs.duration_s * 1000)
            else:
                counts["failed"] += 1
            return orig_result(cfg, obs, lateness)

        gc_pauses: list[float] = []
        gc_t = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if info["generation"] < 2:
                return
            if phase == "start":
                gc_t[0] = time.perf_counter()
            else:
                gc_pauses.append(time.perf_counter() - gc_t[0])

        gc.callbacks.append(on_gc)
        if os.environ.get("BENCH_GC_FREEZE"):
            gc.freeze()
        sched._observe_lateness = on_late
        sched._on_result = on_result
        import socket

        from checks.sip.transport import udp_endpoint

        our_port = udp_endpoint(socket.AF_INET).port
        prof = None
        try:
            for k in range(intervals):
                late.clear()
                stalls.clear()
                rtts.clear()
                gc_pauses.clear()
                counts.update(done=0, failed=0)
                if profile and k == intervals - 1:
                    prof = cProfile.Profile()
                    prof.enable()
                c0, w0 = cpu_s(), loop.time()
                drops0 = (udp_drops(our_port), udp_drops(port))
                ep = udp_endpoint(socket.AF_INET)
                # getattr: the counters are newer than some commits this script measures.
                wake0, recv0 = getattr(ep, "wakeups", 0), getattr(ep, "received", 0)
                # Intervals are measured from start, so every check runs once per window.
                end = t0 + startup["start_s"] + (k + 1) * interval
                while loop.time() < end:  # noqa: ASYNC110 - bounded by `end`
                    await asyncio.sleep(0.2)
                if prof is not None:
                    prof.disable()
                cpu, wall = cpu_s() - c0, loop.time() - w0
                rows.append(
                    {
                        "mode": "daemon" + (" warm" if warm else ""),
                        "interval_no": k + 1,
                        "targets": n,
                        "probes": counts["done"],
                        # Failed probes (timeouts, errors) in this window; runs falling just
                        # outside a window's edges are not losses.
                        "lost": counts["failed"],
                        "cpu_us_per_probe": cpu / max(1, counts["done"]) * 1e6,
                        "core_pct": 100 * cpu / wall,
                        "rtt_p50_ms": pct(rtts, 0.5),
                        "rtt_p99_ms": pct(rtts, 0.99),
                        "late_p99_ms": pct(late, 0.99) * 1000,
                        "rss_mib": rss_mib(),
                        "rss_growth_mib": rss_mib() - rss0,
                        "gc2_count": len(gc_pauses),
                        "gc2_max_ms": max(gc_pauses, default=0.0) * 1000,
                        # Where datagrams were lost: our socket's buffer, the peer's.
                        "drops_ours": udp_drops(our_port) - drops0[0],
                        "drops_peer": udp_drops(port) - drops0[1],
                        # When probes started > 50 ms late: {second of the run: worst, ms}.
                        "reader_wakeups_per_s": (getattr(ep, "wakeups", 0) - wake0) / wall,
                        "datagrams_per_wakeup": (getattr(ep, "received", 0) - recv0)
                        / max(1, getattr(ep, "wakeups", 0) - wake0),
                        "load1": os.getloadavg()[0],  # the VM's other work meanwhile
                        "late_seconds": {k: round(v * 1000) for k, v in sorted(stalls.items())},
                        **startup,
                    }
                )
                print("interval:", json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if os.environ.get("BENCH_GC_TYPES"):  # what full collections still walk
                import collections

                kinds = collections.Counter(type(o).__name__ for o in gc.get_objects())
                print("gc-tracked objects by type:", kinds.most_common(15), file=sys.stderr)
        finally:
            gc.callbacks.remove(on_gc)
            if dumper is not None:
                dumper.stop()
            await d.stop()
    if prof is not None and profile:
        prof.dump_stats(profile)
    return rows


async def run_bare(n: int, port: int, interval: float) -> dict[str, Any]:
    """The floor, as bench_sip.py's `bare`: minimal asyncio OPTIONS loop, same pacing."""
    import bench_sip

    r = await bench_sip.bare(n, port, interval)
    r.update(mode="bare", interval_no=1, rtt_p50_ms=float("nan"))
    return r


def main() -> None:
    """Parse arguments, start the peer, run, print Markdown rows and JSON lines."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="20000,50000")
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--intervals", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--bare", action="store_true")
    ap.add_argument("--profile", help="cProfile the last interval into this file")
    ap.add_argument("--json", help="append one JSON object per row to this file")
    ap.add_argument("--tick", type=float, help="the daemon's scheduler tick, s (default: config's)")
    args = ap.parse_args()
    global TICK
    TICK = args.tick
    sys.path.insert(0, str(ROOT / "bench"))
    tmp = Path(tempfile.mkdtemp())
    proc, port = start_responder(tmp)
    print(
        f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" interval {args.interval:.0f}s, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        "| mode | targets | interval # | probes | lost | CPU µs/probe | % of a core |"
        " RTT p50/p99 ms | lateness p99 ms | RSS MiB | full GCs (max ms) | drops ours/peer |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|")
    out: list[dict[str, Any]] = []
    try:
        for n in [int(x) for x in args.targets.split(",")]:
            for _ in range(args.repeats):
                rows = []
                if args.bare:  # the floor before and after: the VM's load drifts
                    rows.append(asyncio.run(run_bare(n, port, args.interval)))
                    rows[-1]["mode"] = "bare (before)"
                rows += asyncio.run(
                    run_daemon(n, port, args.interval, args.intervals, args.warm, args.profile)
                )
                if args.bare:
                    rows.append(asyncio.run(run_bare(n, port, args.interval)))
                    rows[-1]["mode"] = "bare (after)"
                for r in rows:
                    out.append(r)
                    print(
                        f"| {r['mode']} | {n} | {r['interval_no']} | {r['probes']} |"
                        f" {r['lost']} | {r['cpu_us_per_probe']:.0f} | {r['core_pct']:.1f} |"
                        f" {r['rtt_p50_ms']:.2f} / {r['rtt_p99_ms']:.2f} |"
                        f" {r['late_p99_ms']:.1f} | {r['rss_mib']:.0f} |"
                        f" {r.get('gc2_count', '-')} ({r.get('gc2_max_ms', 0):.0f}) |"
                        f" {r.get('drops_ours', '-')} / {r.get('drops_peer', '-')} |",
                        flush=True,
                    )
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
                if args.bare:
                    daemon = [r["core_pct"] for r in rows if r["mode"].startswith("daemon")]
                    floor = [r["core_pct"] for r in rows if r["mode"].startswith("bare")]
                    ratio = statistics.median(daemon) / statistics.mean(floor)
                    print(f"| ratio | {n} | median daemon / mean floor: {ratio:.2f} |", flush=True)
        if args.repeats > 1:
            print("\nmedians over repeats (steady = last interval):")
            for n in [int(x) for x in args.targets.split(",")]:
                for mode in sorted({r["mode"] for r in out}):
                    last = [
                        r
                        for r in out
                        if r["targets"] == n
                        and r["mode"] == mode
                        and r["interval_no"]
                        == max(x["interval_no"] for x in out if x["mode"] == mode)
                    ]
                    if last:
                        v = [r["core_pct"] for r in last]
                        print(
                            f"{mode} {n}: core % median {statistics.median(v):.1f}"
                            f" range {min(v):.1f}-{max(v):.1f}"
                        )
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
