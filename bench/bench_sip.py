"""SIP OPTIONS at N targets per interval: CPU-µs per probe, loss, RTT p99, lateness p99, RSS.

Run: .venv/bin/python bench/bench_sip.py [--targets 1000,10000,20000,50000] [--interval 30]
         [--modes bare,paced,daemon] [--peer responder|kamailio]

`bare` is the floor (a minimal asyncio OPTIONS loop); `paced` spreads probe()+evaluate() calls evenly over the interval from one 5 ms tick loop;
`daemon` goes through nocd's own Scheduler and Pipeline (judgement, state machine, metrics,
SQLite state flushes). The peer runs in another process so only the prober's CPU is
counted. Traffic goes only to 127.0.0.1; each run is bounded by one interval plus 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks.resources import close_all
from checks.sip import options
from checks.sip.responder import SipResponder


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def _configs(n: int, port: int, interval: float) -> list[options.Config]:
    return [
        options.Config(
            name=f"bench-{i}",
            type="sip_options",
            target=f"sip:127.0.0.1:{port}",
            interval=interval,
            timeout=5,
        )
        for i in range(n)
    ]


async def paced(n: int, port: int, interval: float) -> dict[str, Any]:
    """probe()+evaluate() for n targets spread evenly over one interval (5 ms ticks)."""
    loop = asyncio.get_running_loop()
    cfgs = _configs(n, port, interval)
    rtts: list[float] = []
    late: list[float] = []
    failed = 0
    done = 0

    async def one(cfg: options.Config, due: float) -> None:
        nonlocal failed, done
        late.append(loop.time() - due)
        obs = await options.probe(cfg, loop.time() + cfg.timeout)
        options.evaluate(obs, cfg)
        done += 1
        if obs.ok:
            rtts.append(float(obs.values["rtt_ms"]))
        else:
            failed += 1

    rss0, cpu0, start = _rss_mib(), _cpu(), loop.time()
    step = interval / n
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while i < n:
        now = loop.time()
        while i < n and start + i * step <= now:
            t = loop.create_task(one(cfgs[i], start + i * step))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(0.005)
    while tasks and loop.time() < start + interval + 10:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)
    wall = loop.time() - start
    cpu = _cpu() - cpu0
    await close_all()
    return _result("paced probe+evaluate", n, done, failed, cpu, wall, rtts, late, rss0)


async def bare(n: int, port: int, interval: float) -> dict[str, Any]:
    """The floor: a minimal asyncio OPTIONS loop (no parser, no judgement), same pacing."""
    loop = asyncio.get_running_loop()
    pending: dict[bytes, tuple[asyncio.Future[float], float]] = {}

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            i = data.find(b"branch=")
            key = data[i + 7 : data.find(b";", i)]
            item = pending.pop(key, None)
            if item is not None and not item[0].done():
                item[0].set_result(time.perf_counter() - item[1])

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    lport = transport.get_extra_info("sockname")[1]
    rtts: list[float] = []
    late: list[float] = []
    failed = 0
    done = 0

    async def one(i: int, due: float) -> None:
        nonlocal failed, done
        late.append(loop.time() - due)
        key = f"z9hG4bKbare{i}".encode()
        msg = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={key.decode()};rport\r\n"
            f"From: <sip:b@127.0.0.1>;tag={i}\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: {i}@b\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        fut = loop.create_future()
        pending[key] = (fut, time.perf_counter())
        transport.sendto(msg, ("127.0.0.1", port))
        try:
            rtts.append(await asyncio.wait_for(fut, 5) * 1000)
        except TimeoutError:
            failed += 1
        done += 1

    rss0, cpu0, start = _rss_mib(), _cpu(), loop.time()
    step = interval / n
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while i < n:
        now = loop.time()
        while i < n and start + i * step <= now:
            t = loop.create_task(one(i, start + i * step))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(0.005)
    while tasks and loop.time() < start + interval + 10:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)
    wall = loop.time() - start
    cpu = _cpu() - cpu0
    transport.close()
    return _result("bare asyncio loop (floor)", n, done, failed, cpu, wall, rtts, late, rss0)


async def daemon(n: int, port: int, interval: float) -> dict[str, Any]:
    """The same load through nocd's Scheduler + Pipeline (judge, state, metrics, store)."""
    from prometheus_client import CollectorRegistry

    from nocd.clock import SystemClock
    from nocd.metrics import Metrics
    from nocd.pipeline import Pipeline
    from nocd.scheduler import Scheduler
    from nocd.store import Store

    loop = asyncio.get_running_loop()
    cfgs = _configs(n, port, interval)
    rtts: list[float] = []
    late: list[float] = []
    counts = {"done": 0, "failed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        pipeline = Pipeline(store, SystemClock(), Metrics(CollectorRegistry()))
        pipeline.set_checks(cfgs, (20, 30.0, 25.0))

        def on_result(cfg: Any, obs: Any, lateness: float) -> float | None:
            counts["done"] += 1
            if obs.ok:
                rtts.append(float(obs.values["rtt_ms"]))
            else:
                counts["failed"] += 1
            return pipeline.on_result(cfg, obs, lateness)

        sched = Scheduler(on_result, max_concurrency=5000, observe_lateness=late.append)
        rss0, cpu0, start = _rss_mib(), _cpu(), loop.time()
        sched.set_checks(cfgs)
        runner = loop.create_task(sched.run())
        flusher = loop.create_task(pipeline.run())
        # One interval: every check's first run is spread over it by a hash of its name.
        while loop.time() < start + interval and sched.probes_started < n:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        while sched.probes_started < n and loop.time() < start + interval + 5:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        runner.cancel()
        await sched.drain(10)
        wall = loop.time() - start
        cpu = _cpu() - cpu0
        flusher.cancel()
        await asyncio.gather(runner, flusher, return_exceptions=True)
        await store.close()
    await close_all()
    return _result(
        "daemon scheduler+pipeline",
        n,
        counts["done"],
        counts["failed"],
        cpu,
        wall,
        rtts,
        late,
        rss0,
    )


def _result(
    mode: str,
    n: int,
    done: int,
    failed: int,
    cpu: float,
    wall: float,
    rtts: list[float],
    late: list[float],
    rss0: float,
) -> dict[str, Any]:
    return {
        "mode": mode,
        "targets": n,
        "probes": done,
        "lost": failed + max(0, n - done),
        "cpu_us_per_probe": cpu / max(done, 1) * 1e6,
        "core_pct": cpu / wall * 100,
        "rtt_p99_ms": _p99(rtts),
        "late_p99_ms": _p99(late) * 1000,
        "rss_mib": _rss_mib(),
        "rss_growth_mib": _rss_mib() - rss0,
    }


def serve(port_file: str, cpu_file: str) -> None:
    """Run the SipResponder (peer process) until stdin closes."""

    async def main() -> None:
        r = SipResponder(tcp_port=None)
        await r.start()
        # As large a receive buffer as the prober's (4 MiB): a 1 s stall of this process on
        # the busy VM must not drop requests that the peer would answer a moment later.
        sock = r._udp.get_extra_info("socket") if r._udp is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        Path(port_file).write_text(str(r.udp_port))  # noqa: ASYNC240 - tiny, once
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        Path(cpu_file).write_text(f"{_cpu()} {r.received}")  # noqa: ASYNC240
        await r.stop()

    asyncio.run(main())


def main() -> None:
    """Parse arguments, start the peer, run the rounds, print a Markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="1000,10000,20000,50000")
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--modes", default="bare,paced,daemon", help="comma-separated")
    ap.add_argument("--peer", choices=["responder", "kamailio"], default="responder")
    ap.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    sizes = [int(x) for x in args.targets.split(",")]
    modes = args.modes.split(",")
    tmp = Path(tempfile.mkdtemp())
    kam = None
    peer = None
    if args.peer == "kamailio":
        from tests.integration.kamailio import Kamailio

        kam = Kamailio(tmp / "kamailio")
        kam.start()
        port = kam.udp_port
    else:
        peer = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(tmp / "port"), str(tmp / "cpu")],
            stdin=subprocess.PIPE,
        )
        for _ in range(100):
            if (tmp / "port").exists() and (tmp / "port").read_text():
                break
            time.sleep(0.05)
        port = int((tmp / "port").read_text())
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, peer={args.peer}"
    )
    print(
        "| mode | targets/interval | probes | lost | CPU µs/probe | % of a core |"
        " RTT p99 ms | lateness p99 ms | RSS MiB (growth) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for mode in modes:
            for n in sizes:
                fn = {"paced": paced, "daemon": daemon, "bare": bare}[mode]
                r = asyncio.run(fn(n, port, args.interval))
                print(
                    f"| {r['mode']} | {n} / {args.interval:.0f}s | {r['probes']} | {r['lost']} |"
                    f" {r['cpu_us_per_probe']:.0f} | {r['core_pct']:.1f} |"
                    f" {r['rtt_p99_ms']:.2f} | {r['late_p99_ms']:.1f} |"
                    f" {r['rss_mib']:.0f} ({r['rss_growth_mib']:+.0f}) |",
                    flush=True,
                )
    finally:
        if peer is not None and peer.stdin is not None:
            peer.stdin.close()
            peer.wait(10)
            cpu, received = (tmp / "cpu").read_text().split()
            print(f"\npeer (SipResponder) CPU {float(cpu):.1f} s for {received} requests")
        if kam is not None:
            kam.stop()


if __name__ == "__main__":
    main()
