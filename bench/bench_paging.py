"""Benchmark paging's hot paths: support-hours and on-call lookups, and the per-second tick.

`Pager.run_due` runs every second inside a write transaction, so its cost with many
escalations in flight bounds how long other writers wait. Usage:
    .venv/bin/python bench/bench_paging.py --escalations 10,1000,10000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nocd.calendar_config import CalendarConfig
from nocd.clock import FakeClock
from nocd.store import Store
from paging.config import PagingConfig
from paging.hours import add_open_time, is_open
from paging.notifiers import DryRunNotifier
from paging.pager import Pager
from paging.schedules import on_call

OFFICE = CalendarConfig.model_validate(
    {
        "timezone": "America/New_York",
        "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": [{"country": "US"}],
    }
)
PAGING = PagingConfig.model_validate(
    {
        "people": {f"p{i}": {"name": f"Person {i}", "phone": f"+1555010{i}"} for i in range(4)},
        "schedules": {
            "primary": {
                "timezone": "America/New_York",
                "layers": [
                    {"rotation": "weekly", "start": "2026-01-05", "participants": ["p0", "p1"]},
                    {
                        "rotation": "daily",
                        "start": "2026-01-05",
                        "handoff": "18:00",
                        "participants": ["p2", "p3"],
                        "restrict": {d: ["18:00-09:00"] for d in ("mon", "tue", "wed", "thu")},
                    },
                ],
            }
        },
        "escalation_policies": {
            "noc": {"steps": [{"schedules": ["primary"], "wait": "1h"}]},
        },
        "routing": {"default": {"support_hours": "office", "escalation_policy": "noc"}},
    }
)
T0 = datetime(2026, 1, 10, 7, 0, tzinfo=UTC).timestamp()


def per_call_us(fn: object, n: int) -> float:
    """Median over 5 batches of the per-call cost in microseconds."""
    rng = random.Random(7)
    instants = [
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 3e7)) for _ in range(n)
    ]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for t in instants:
            fn(t)  # type: ignore[operator]
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


async def tick_ms(escalations: int, rounds: int) -> tuple[float, float, int]:
    """Median ms of an idle tick with N escalations waiting; slowest storm tick; storm ticks."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        clock = FakeClock(T0)
        pager = Pager(store, PAGING, {"office": OFFICE}, DryRunNotifier(), clock)
        async with store.transaction() as conn:
            await conn.executemany(
                "INSERT INTO incidents (code, group_key, severity, state, title, opened_at) "
                "VALUES (?, ?, 'critical', 'triggered', 'PBX down', ?)",
                [(f"C{i}", f"site:{i}", T0) for i in range(escalations)],
            )
            await conn.executemany(
                "INSERT INTO paging_escalations (incident_id, policy, step, repeat, "
                "next_fire_at, state, started_at, updated_at) "
                "VALUES (?, 'noc', 0, 0, ?, 'active', ?, ?)",
                [(i + 1, T0, T0, T0) for i in range(escalations)],
            )
        # The storm: every step due at once, fired at most 200 per tick (bounded transaction).
        storm, now = [], T0
        while True:
            start = time.perf_counter()
            await pager.run_due(now)
            storm.append((time.perf_counter() - start) * 1000)
            async with store.reader.execute(
                "SELECT COUNT(*) FROM paging_escalations WHERE state='active' AND next_fire_at<=?",
                (now,),
            ) as cur:
                row = await cur.fetchone()
            now += 1
            if not row or not row[0]:
                break
        idle = []
        for r in range(rounds):
            start = time.perf_counter()
            await pager.run_due(now + r)
            idle.append((time.perf_counter() - start) * 1000)
        await store.close()
        return statistics.median(idle), max(storm), len(storm)


def main() -> None:
    """Run and print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--escalations", default="10,1000,10000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000)
    a = ap.parse_args()
    sched = PAGING.schedules["primary"]
    print("| lookup | µs per call |\n|---|---:|")
    print(
        f"| is_open (Mon–Fri 9–18, US holidays) | {per_call_us(lambda t: is_open(OFFICE, t), a.calls):.1f} |"
    )
    print(
        f"| add_open_time 4 h | {per_call_us(lambda t: add_open_time(OFFICE, t, 14400), a.calls):.1f} |"
    )
    print(
        f"| on_call (2 layers, restrict) | {per_call_us(lambda t: on_call(sched, t), a.calls):.1f} |"
    )
    print("\n| escalations | idle tick ms (median) | storm: slowest tick ms | storm ticks |")
    print("|---:|---:|---:|---:|")
    for n in (int(x) for x in a.escalations.split(",")):
        idle, storm, ticks = asyncio.run(tick_ms(n, a.rounds))
        print(f"| {n} | {idle:.2f} | {storm:.0f} | {ticks} |")


if __name__ == "__main__":
    main()
