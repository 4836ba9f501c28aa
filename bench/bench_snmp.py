"""SNMP GETs: rate and CPU per GET (nocd's probe, pysnmp's hlapi, snmpget) and paced polling.

Run: .venv/bin/python bench/bench_snmp.py [--sections gets,paced,profile] [--gets 3000] [--v3-gets 1000]
         [--rounds 3] [--devices 1000] [--interval 60] [--paced-rounds 3]
         [--paced-modes idle,probe,daemon,probe-v3,hlapi]

- gets: N GETs back to back at concurrency 1/32/64 through `checks.snmp.probe`, the same
  GET through pysnmp's hlapi `get_cmd` (one shared engine, lookupMib=False: nocd's path
  before the v2c fast path), and net-snmp's `snmpget` (a process per GET); v2c and v3.
- paced: `--devices` checks polled once per `--interval`, spread evenly, as `probe()` +
  `evaluate()` from a pacing loop and through nocd's Scheduler + Pipeline; plus the pacing
  loop alone (the floor). Reported as % of one core (process CPU / wall).
- profile: one concurrent v2c round under cProfile (CPU-time clock), grouped by layer.

The agent is a net-snmp snmpd this script starts on 127.0.0.1 (its CPU is reported apart);
every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks import snmp
from checks.resources import close_all
from checks.snmp_common import plain_value
from tests.integration import snmpd as agent

OIDS = [agent.TEMPERATURE_OID, agent.ENDPOINTS_OID, agent.IF_OPER_STATUS_1]
Round = tuple[float, float, int, float]  # GETs/s, client CPU ms per GET, failures, agent ms/GET


def config(address: str, version: str, name: str = "bench", interval: float = 60) -> snmp.Config:
    """An `snmp` check reading OIDS (+ sysUpTime) from the local agent."""
    raw: dict[str, Any] = {
        "name": name,
        "type": "snmp",
        "target": address,
        "timeout": "2s",
        "interval": interval,
        "oids": [{"oid": o, "name": f"o{i}"} for i, o in enumerate(OIDS)],
    }
    if version == "2c":
        raw["community"] = "${BENCH_COMMUNITY}"
    else:
        raw |= {
            "version": "3",
            "v3": {"user": agent.V3_USER, "auth_key": "${BENCH_AUTH}", "priv_key": "${BENCH_PRIV}"},
        }
    return snmp.Config.model_validate(raw)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class AgentCpu:
    """CPU seconds snmpd has used, read from /proc (it runs in another process)."""

    def __init__(self, daemon: agent.Snmpd) -> None:
        assert daemon.proc is not None
        self.stat = Path(f"/proc/{daemon.proc.pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float:
        """utime + stime of the agent so far."""
        fields = self.stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick


async def _hlapi_get(cfg: snmp.Config, engine: Any) -> bool:
    """One GET the way nocd's probe did before the fast path: hlapi get_cmd, shared engine."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        UdpTransportTarget,
        get_cmd,
    )

    host, port = cfg.target.split(":")
    if cfg.version == "2c":
        assert cfg.community is not None
        auth: Any = CommunityData(cfg.community.get_secret_value(), mpModel=1)
    else:
        assert cfg.v3 is not None
        auth = cfg.v3.usm_user_data()
    target = await UdpTransportTarget.create((host, int(port)), timeout=1.9, retries=0)
    oids = [*OIDS, "1.3.6.1.2.1.1.3.0"]
    err, status, _, var_binds = await get_cmd(
        engine,
        auth,
        target,
        ContextData(),
        *(ObjectType(ObjectIdentity(o)) for o in oids),
        lookupMib=False,
    )
    for _, val in var_binds:
        plain_value(val)
    return err is None and not int(status)


async def get_round(cfg: snmp.Config, gets: int, concurrency: int, path: str) -> tuple[float, ...]:
    """(GETs/s, CPU ms per GET, failures) for `gets` GETs at `concurrency`."""
    loop = asyncio.get_running_loop()
    engine: Any = None
    if path == "hlapi":
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        engine = SnmpEngine()

        async def one() -> bool:
            return await _hlapi_get(cfg, engine)
    else:

        async def one() -> bool:
            obs = await snmp.probe(cfg, loop.time() + 2)
            snmp.evaluate(obs, cfg)
            return obs.ok

    for _ in range(5):  # warm: sockets, engine, v3 discovery, templates
        await one()
    queue = iter(range(gets))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for _ in queue:
            failures += not await one()

    try:
        cpu0, wall0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    finally:
        if engine is not None:
            engine.close_dispatcher()
        await close_all()
    return gets / wall, cpu * 1000 / gets, failures


def snmpget_round(address: str, gets: int, version: str) -> tuple[float, ...]:
    """(GETs/s, CPU ms per GET, failures) for `gets` sequential snmpget runs."""
    if version == "2c":
        auth = ["-v2c", "-c", agent.COMMUNITY]
    else:
        auth = ["-v3", "-l", "authPriv", "-u", agent.V3_USER, "-a", "SHA", "-A", agent.AUTH_KEY]
        auth += ["-x", "AES", "-X", agent.PRIV_KEY]
    env = {**os.environ, **agent.QUIET_ENV}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    failures = 0
    wall0 = time.perf_counter()
    for _ in range(gets):
        rc = subprocess.run(
            ["snmpget", "-Oqn", "-t", "2", "-r", "0", *auth, address, *OIDS, "1.3.6.1.2.1.1.3.0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        ).returncode
        failures += rc != 0
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return gets / wall, cpu * 1000 / gets, failures


def _spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def run_gets(daemon: agent.Snmpd, args: argparse.Namespace) -> None:
    """The GET/s table: every client, both versions, `rounds` rounds each."""
    cpu = AgentCpu(daemon)
    gets = min(args.gets, 20_000)  # bounded
    print(
        f"\n### GETs back to back: {gets} per round (v3: {min(gets, args.v3_gets)}; "
        f"hlapi: at most 2,000; snmpget: {args.snmpget_gets}), "
        f"{args.rounds} rounds, median (min–max); 4 OIDs per GET\n"
    )
    print("| SNMP | client | GETs/s | client CPU ms/GET | snmpd CPU ms/GET | failures |")
    print("|---|---|---:|---:|---:|---:|")
    for version in ("2c", "3"):
        cfg = config(daemon.address, version)
        many = gets if version == "2c" else min(gets, args.v3_gets)  # v3 is ~20x slower
        few, snmpgets = min(many, 2000), min(args.snmpget_gets, 2000)
        clients = [(f"nocd probe, {c} at a time", many, "nocd", c) for c in (1, 32, 64)]
        clients.append(("pysnmp hlapi get_cmd, 32 at a time", few, "hlapi", 32))
        clients.append(("net-snmp snmpget, process per GET", snmpgets, "snmpget", 1))
        for label, count, kind, concurrency in clients:
            results: list[Round] = []
            for _ in range(args.rounds):
                a0 = cpu.seconds()
                if kind == "snmpget":
                    rate, ms, fails = snmpget_round(daemon.address, count, version)
                else:
                    rate, ms, fails = asyncio.run(get_round(cfg, count, concurrency, kind))
                results.append((rate, ms, int(fails), (cpu.seconds() - a0) * 1000 / count))
            print(
                f"| v{version} | {label} | {_spread([r[0] for r in results], ',.0f')} |"
                f" {_spread([r[1] for r in results], '.3f')} |"
                f" {statistics.median(r[3] for r in results):.2f} |"
                f" {sum(r[2] for r in results)} |",
                flush=True,
            )


async def paced(cfgs: list[snmp.Config], interval: float, mode: str) -> dict[str, float]:
    """Poll every check once, spread evenly over `interval`; process CPU over the window."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    counts = {"done": 0, "failed": 0}

    engine: Any = None
    if mode == "hlapi":
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        engine = SnmpEngine()

    async def one(cfg: snmp.Config) -> None:
        if engine is not None:
            ok = await _hlapi_get(cfg, engine)
        else:
            obs = await snmp.probe(cfg, loop.time() + cfg.timeout)
            snmp.evaluate(obs, cfg)
            ok = obs.ok
        counts["done"] += 1
        counts["failed"] += not ok

    tasks: set[asyncio.Task[None]] = set()
    cpu0, start = _cpu(), loop.time()
    step = interval / len(cfgs)
    for i, cfg in enumerate(cfgs):
        due = start + i * step
        await asyncio.sleep(max(0.0, due - loop.time()))  # one wake-up per probe
        late.append(loop.time() - due)
        if mode == "idle":
            continue
        t = loop.create_task(one(cfg))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    await asyncio.sleep(max(0.0, start + interval - loop.time()))
    while tasks and loop.time() < start + interval + 10:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)
    wall, cpu = loop.time() - start, _cpu() - cpu0
    if engine is not None:
        engine.close_dispatcher()
    await close_all()
    late.sort()
    return {
        "probes": counts["done"],
        "failed": counts["failed"],
        "core_pct": cpu / wall * 100,
        "cpu_us": cpu / max(counts["done"], 1) * 1e6,
        "late_p99_ms": late[int(len(late) * 0.99)] * 1000,
    }


async def through_daemon(cfgs: list[snmp.Config], interval: float) -> dict[str, float]:
    """The same checks through nocd's Scheduler + Pipeline (judge, state, metrics, store)."""
    from prometheus_client import CollectorRegistry

    from nocd.clock import SystemClock
    from nocd.metrics import Metrics
    from nocd.pipeline import Pipeline
    from nocd.scheduler import Scheduler
    from nocd.store import Store

    loop = asyncio.get_running_loop()
    late: list[float] = []
    counts = {"done": 0, "failed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        pipeline = Pipeline(store, SystemClock(), Metrics(CollectorRegistry()))
        pipeline.set_checks(cfgs, (20, 30.0, 25.0))

        def on_result(cfg: Any, obs: Any, lateness: float) -> float | None:
            counts["done"] += 1
            counts["failed"] += not obs.ok
            return pipeline.on_result(cfg, obs, lateness)

        sched = Scheduler(on_result, observe_lateness=late.append)
        cpu0, start = _cpu(), loop.time()
        sched.set_checks(cfgs)
        runner = loop.create_task(sched.run())
        flusher = loop.create_task(pipeline.run())
        # One interval: every check's first run is spread over it by a hash of its name.
        while loop.time() < start + interval:  # noqa: ASYNC110 - bounded by the interval
            await asyncio.sleep(0.5)
        runner.cancel()
        await sched.drain(10)
        wall, cpu = loop.time() - start, _cpu() - cpu0
        flusher.cancel()
        await asyncio.gather(runner, flusher, return_exceptions=True)
        await store.close()
    await close_all()
    late.sort()
    return {
        "probes": counts["done"],
        "failed": counts["failed"],
        "core_pct": cpu / wall * 100,
        "cpu_us": cpu / max(counts["done"], 1) * 1e6,
        "late_p99_ms": late[int(len(late) * 0.99)] * 1000 if late else float("nan"),
    }


def run_paced(daemon: agent.Snmpd, args: argparse.Namespace) -> None:
    """The paced table: idle floor, probe+evaluate, and the daemon, `paced_rounds` each."""
    cpu = AgentCpu(daemon)
    n, interval = min(args.devices, 20_000), args.interval
    print(
        f"\n### {n} devices polled once per {interval:.0f} s, evenly spread; "
        f"{args.paced_rounds} rounds, median (min–max)\n"
    )
    print(
        "| path | probes (failed) | % of a core | CPU µs/probe | snmpd % of a core |"
        " lateness p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    labels = {
        "idle": "pacing loop alone (floor)",
        "probe": "v2c paced probe+evaluate",
        "daemon": "v2c daemon Scheduler+Pipeline",
        "probe-v3": "v3 authPriv paced probe+evaluate",
        "hlapi": "v2c paced pysnmp hlapi get_cmd (the old path)",
    }
    for mode in args.paced_modes.split(","):
        label = labels[mode]
        version = "3" if mode.endswith("v3") else "2c"
        rows: list[dict[str, float]] = []
        for _ in range(args.paced_rounds):
            cfgs = [config(daemon.address, version, f"dev{i}", interval) for i in range(n)]
            a0 = time.perf_counter(), cpu.seconds()
            if mode == "daemon":
                r = asyncio.run(through_daemon(cfgs, interval))
            else:
                r = asyncio.run(paced(cfgs, interval, mode.removesuffix("-v3")))
            r["agent_pct"] = (cpu.seconds() - a0[1]) / (time.perf_counter() - a0[0]) * 100
            rows.append(r)
        print(
            f"| {label} | {statistics.median(r['probes'] for r in rows):.0f}"
            f" ({sum(r['failed'] for r in rows):.0f}) |"
            f" {_spread([r['core_pct'] for r in rows], '.2f')} |"
            f" {_spread([r['cpu_us'] for r in rows], '.0f') if rows[0]['probes'] else '–'} |"
            f" {statistics.median(r['agent_pct'] for r in rows):.2f} |"
            f" {statistics.median(r['late_p99_ms'] for r in rows):.1f} |",
            flush=True,
        )


def run_profile(daemon: agent.Snmpd, args: argparse.Namespace) -> None:
    """Where a v2c GET's CPU goes: one 32-concurrent round under cProfile, by layer."""
    cfg = config(daemon.address, "2c")
    prof = cProfile.Profile(time.process_time)
    gets = min(args.gets, 5000)

    async def go() -> None:
        await get_round(cfg, 50, 32, "nocd")  # warm
        prof.enable()
        await get_round(cfg, gets, 32, "nocd")
        prof.disable()

    asyncio.run(go())
    layers = {
        "checks/snmp_ber.py": "reply framing + value reads (snmp_ber)",
        "checks/snmp_v2c.py": "socket, matching, resends (snmp_v2c)",
        "checks/snmp.py": "probe, Observation, evaluate (snmp)",
        "checks/snmp_common.py": "value → text/number (snmp_common)",
        "pyasn1": "pyasn1 (values of other kinds)",
        "pysnmp": "pysnmp",
        "asyncio": "asyncio event loop, futures, timers",
        "selectors": "asyncio event loop, futures, timers",
        "sendto": "kernel: sendto/recvfrom",
        "recvfrom": "kernel: sendto/recvfrom",
        "nocd/": "nocd model (Observation, Verdict)",
        "checks/resources.py": "per-loop shared resources lookup",
        "weakref": "per-loop shared resources lookup",
        "bench/bench_snmp.py": "the benchmark's own driver",
    }
    by_layer: dict[str, float] = {}
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def layer(path: str, func: str) -> str:
        return next((v for k, v in layers.items() if k in path or k in func), "other")

    total = 0.0
    for (path, _, func), (_, _, tottime, _, callers) in stats.items():
        total += tottime
        if path == "~" and layer(path, func) == "other":
            # A builtin (dict.get, len, int.from_bytes...): charge it to its callers' layers.
            for (cpath, _, cfunc), caller in callers.items():
                key = layer(cpath, cfunc)
                by_layer[key] = by_layer.get(key, 0.0) + caller[2]
            continue
        key = layer(path, func)
        by_layer[key] = by_layer.get(key, 0.0) + tottime
    print(f"\n### Where a v2c GET's CPU goes ({gets} GETs, 32 at a time, cProfile CPU clock)\n")
    print("| layer | share |")
    print("|---|---:|")
    for key, t in sorted(by_layer.items(), key=lambda kv: -kv[1]):
        print(f"| {key} | {t / total * 100:.0f}% |")


def main() -> None:
    """Start snmpd, run the chosen sections, print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sections", default="gets,paced,profile")
    parser.add_argument("--gets", type=int, default=3000)
    parser.add_argument("--v3-gets", type=int, default=1000)
    parser.add_argument("--snmpget-gets", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--paced-rounds", type=int, default=3)
    parser.add_argument("--paced-modes", default="idle,probe,daemon,probe-v3,hlapi")
    args = parser.parse_args()
    # The store's info lines ("store migrated") would interleave with the tables.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    os.environ |= {
        "BENCH_COMMUNITY": agent.COMMUNITY,
        "BENCH_AUTH": agent.AUTH_KEY,
        "BENCH_PRIV": agent.PRIV_KEY,
    }
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start"
    )
    sections = {"gets": run_gets, "paced": run_paced, "profile": run_profile}
    with tempfile.TemporaryDirectory() as tmp:
        daemon = agent.Snmpd(Path(tmp))
        daemon.start()
        try:
            for name in args.sections.split(","):
                sections[name](daemon, args)
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
