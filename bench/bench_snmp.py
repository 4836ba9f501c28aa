"""SNMP GETs per second and CPU per GET: nocd's `snmp` probe vs net-snmp's snmpget (local snmpd).

Run: .venv/bin/python bench/bench_snmp.py [--gets 2000] [--rounds 3]
Traffic goes only to an snmpd this script starts on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks import snmp
from checks.resources import close_all
from tests.integration import snmpd as agent

OIDS = [agent.TEMPERATURE_OID, agent.ENDPOINTS_OID, agent.IF_OPER_STATUS_1]


def config(address: str, version: str) -> snmp.Config:
    raw: dict[str, Any] = {
        "name": "bench",
        "type": "snmp",
        "target": address,
        "timeout": "2s",
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


async def nocd_round(cfg: snmp.Config, gets: int, concurrency: int) -> tuple[float, float, int]:
    """(GETs/s, CPU ms per GET, failures) for `gets` probes at `concurrency`."""
    loop = asyncio.get_running_loop()
    await snmp.probe(cfg, loop.time() + 2)  # warm: engine, discovery
    queue = iter(range(gets))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for _ in queue:
            obs = await snmp.probe(cfg, loop.time() + 2)
            failures += not obs.ok

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return gets / wall, cpu * 1000 / gets, failures


def snmpget_round(address: str, gets: int, version: str) -> tuple[float, float, int]:
    """(GETs/s, CPU ms per GET, failures) for `gets` sequential snmpget runs."""
    if version == "2c":
        auth = ["-v2c", "-c", agent.COMMUNITY]
    else:
        auth = [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            agent.V3_USER,
            "-a",
            "SHA",
            "-A",
            agent.AUTH_KEY,
            "-x",
            "AES",
            "-X",
            agent.PRIV_KEY,
        ]
    env = {**os.environ, **agent.QUIET_ENV}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    failures = 0
    wall0 = time.perf_counter()
    for _ in range(gets):
        rc = subprocess.run(
            ["snmpget", "-Oqn", "-t", "2", "-r", "0", *auth, address, *OIDS],
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


async def run_nocd(address: str, version: str, gets: int, concurrency: int) -> tuple[float, ...]:
    try:
        return await nocd_round(config(address, version), gets, concurrency)
    finally:
        await close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--snmpget-gets", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gets = min(args.gets, 20_000)  # bounded
    os.environ |= {
        "BENCH_COMMUNITY": agent.COMMUNITY,
        "BENCH_AUTH": agent.AUTH_KEY,
        "BENCH_PRIV": agent.PRIV_KEY,
    }
    with tempfile.TemporaryDirectory() as tmp:
        daemon = agent.Snmpd(Path(tmp))
        daemon.start()
        try:
            rows = []
            for version in ("2c", "3"):
                for label, fn in (
                    (
                        "nocd probe, 1 at a time",
                        lambda v=version: asyncio.run(run_nocd(daemon.address, v, gets, 1)),
                    ),
                    (
                        "nocd probe, 32 concurrent",
                        lambda v=version: asyncio.run(run_nocd(daemon.address, v, gets, 32)),
                    ),
                    (
                        "net-snmp snmpget (process per GET)",
                        lambda v=version: snmpget_round(
                            daemon.address, min(args.snmpget_gets, 2000), v
                        ),
                    ),
                ):
                    results = [fn() for _ in range(args.rounds)]
                    rate = statistics.median(r[0] for r in results)
                    cpu = statistics.median(r[1] for r in results)
                    fails = sum(r[2] for r in results)
                    rows.append((f"v{version}", label, rate, cpu, fails))
        finally:
            daemon.stop()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {gets} GETs x {args.rounds} rounds "
        f"(snmpget: {args.snmpget_gets}), 3 OIDs per GET, medians"
    )
    print("| SNMP | client | GETs/s | CPU ms/GET | failures |")
    print("|---|---|---:|---:|---:|")
    for version, label, rate, cpu, fails in rows:
        print(f"| {version} | {label} | {rate:,.0f} | {cpu:.2f} | {fails} |")
    for version in ("v2c", "v3"):
        mine = next(r for r in rows if r[0] == version and r[1].endswith("1 at a time"))
        theirs = next(r for r in rows if r[0] == version and r[1].startswith("net-snmp"))
        print(
            f"{version}: nocd (sequential) / snmpget: {mine[2] / theirs[2]:.1f}x GETs/s, "
            f"{theirs[3] / mine[3]:.1f}x less CPU per GET"
        )


if __name__ == "__main__":
    main()
