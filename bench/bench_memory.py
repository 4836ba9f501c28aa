"""Where the daemon's memory goes per check: RSS, and bytes per check by component.

Run: .venv/bin/python bench/bench_memory.py [--checks 50000] [--repeats 3]
         [--daemon] [--seconds 40] [--tick 0.02]

`config` (always): in a fresh process per repeat, validate a Config of N `sip_options`
checks built like bench_daemon_sip.py's but each with its own target (as a real fleet),
drop the input, and report the RSS growth per check; then, in one more process, the bytes
per check by part of a check model (the instance, its `__dict__`, `__pydantic_fields_set__`,
field values; an object shared by several checks is counted once, where first reached).
`--trace`: one daemon run under tracemalloc, printing the live heap by allocation site.
`--daemon`: the real Daemon in-process with N checks against the SipResponder in a
subprocess (bench_daemon_sip.py's), warm states, run `--seconds` (more than one 30 s
interval, so every check has been probed and judged), then RSS and the bytes per check of
each per-check structure (config, pipeline states/results/indexes, scheduler heap/indexes,
metrics columns), walked with gc.get_referents, each object counted once, in that order.
Traffic goes only to 127.0.0.1; every run is bounded by --seconds + start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

_SKIP = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def check_dicts(n: int) -> list[dict[str, Any]]:
    """N sip_options checks as bench_daemon_sip.py writes them, but each to its own PBX."""
    return [
        {
            "name": f"bench-{i}",
            "type": "sip_options",
            "target": f"sip:pbx-{i}.example.com",  # never probed: the Config alone
            "interval": 30.0,
            "timeout": 5,
        }
        for i in range(n)
    ]


class Sizer:
    """Deep sizes by component; an object reached from several components counts once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def size(self, roots: Iterable[Any]) -> int:
        """Bytes of everything reachable from `roots` not counted before (classes skipped)."""
        total = 0
        stack = list(roots)
        while stack:
            obj = stack.pop()
            if isinstance(obj, _SKIP) or id(obj) in self.seen:
                continue
            self.seen.add(id(obj))
            total += sys.getsizeof(obj)
            stack.extend(gc.get_referents(obj))
        return total


def model_parts(checks: list[Any]) -> dict[str, float]:
    """Bytes per check by part of the pydantic check model (shared objects counted once)."""
    sizer = Sizer()
    parts: dict[str, int] = {}

    def add(key: str, objs: Iterable[Any]) -> None:
        parts[key] = parts.get(key, 0) + sizer.size(objs)

    add("model instance (object)", [])
    for c in checks:
        if id(c) not in sizer.seen:
            sizer.seen.add(id(c))
            parts["model instance (object)"] += sys.getsizeof(c)
    for c in checks:
        d = c.__dict__
        if id(d) not in sizer.seen:
            sizer.seen.add(id(d))
            parts["__dict__ (table)"] = parts.get("__dict__ (table)", 0) + sys.getsizeof(d)
    add("__pydantic_fields_set__", (c.__pydantic_fields_set__ for c in checks))
    fields = list(type(checks[0]).model_fields)
    for f in fields:
        add(f"field {f}", (c.__dict__.get(f) for c in checks))
    n = len(checks)
    return {k: v / n for k, v in parts.items() if v}


def one_config(n: int) -> dict[str, Any]:
    """Validate a Config of n checks in this process; RSS and per-check figures."""
    import nocd.daemon  # noqa: F401 - the daemon's imports, so RSS deltas are the config's
    from nocd.config import Config

    gc.collect()
    rss0 = rss_mib()
    data = {"daemon": {"listen": "127.0.0.1:0"}, "checks": check_dicts(n)}
    t0 = time.perf_counter()
    cfg = Config.model_validate(data)
    took = time.perf_counter() - t0
    del data
    gc.collect()
    rss1 = rss_mib()
    return {
        "checks": n,
        "rss_imports_mib": rss0,
        "rss_config_mib": rss1,
        "rss_per_check_b": (rss1 - rss0) * 1048576 / n,
        "validate_s": took,
        "_cfg": cfg,
    }


def config_runs(n: int, repeats: int) -> None:
    """`repeats` fresh processes building the Config, then the parts breakdown."""
    rows = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--one", "config", "--checks", str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"\n## Config alone, {n:,} checks ({repeats} fresh processes)\n")
    print("| run | RSS after imports MiB | RSS with config MiB | bytes/check (RSS) | validate s |")
    print("|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rows, 1):
        print(
            f"| {i} | {r['rss_imports_mib']:.1f} | {r['rss_config_mib']:.1f} |"
            f" {r['rss_per_check_b']:.0f} | {r['validate_s']:.2f} |"
        )
    med = statistics.median(r["rss_per_check_b"] for r in rows)
    print(f"\nmedian RSS growth per check: {med:.0f} B ({med * n / 1048576:.1f} MiB at {n:,})")
    r = one_config(n)
    parts = model_parts(list(r["_cfg"].checks))
    print("\n| part of a check model | bytes/check |\n|---|---:|")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        if v >= 0.5:
            print(f"| {k} | {v:.0f} |")
    print(f"| **total (deep, shared counted once)** | **{sum(parts.values()):.0f}** |")


def _attrs(obj: Any, *names: str) -> list[Any]:
    """The named attributes of `obj` that exist (the hot path's internals change)."""
    return [getattr(obj, n) for n in names if hasattr(obj, n)]


def daemon_parts(d: Any) -> dict[str, int]:
    """Deep bytes of each per-check structure of a running Daemon, each object once."""
    sizer = Sizer()
    p, s, m, e = d.pipeline, d.scheduler, d.metrics.per_check, d.engine
    comps: list[tuple[str, list[Any]]] = [
        ("config: check models", list(d.config.checks)),
        ("config: checks_by_name index", [d.config.__dict__.get("checks_by_name")]),
        ("pipeline.states (CheckState)", [p.states]),
        ("pipeline.results (latest results)", _attrs(p.results, "_raw") or [p.results]),
        ("pipeline._policies (StatePolicy)", _attrs(p, "_policies")),
        ("pipeline._checks/_evaluators index", _attrs(p, "_checks")),
        ("pipeline._persisted/_dirty", _attrs(p, "_persisted", "_dirty")),
        ("scheduler._heap entries", _attrs(s, "_heap")),
        ("scheduler other per-check indexes", _attrs(s, "_gen", "_checks")),
        ("metrics per-check columns", _attrs(m, "index", "names", *PER_CHECK_COLUMNS)),
        ("incident engine indexes", _attrs(e, "_group_of", "_groups", "_parents", "_children")),
    ]
    return {k: sizer.size(v) for k, v in comps}


PER_CHECK_COLUMNS = ("up", "severity", "duration", "flapping", "probes")


def trace_top(snap: Any, limit: int = 25) -> list[str]:
    """Live bytes by allocation site: the innermost frame in the project's own code."""
    mine = (str(ROOT / "nocd"), str(ROOT / "checks"), str(ROOT / "paging"))
    sites: dict[str, list[int]] = {}
    for st in snap.statistics("traceback"):
        frames = [f for f in st.traceback if f.filename.startswith(mine)]
        f = frames[-1] if frames else st.traceback[-1]
        key = f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}"
        acc = sites.setdefault(key, [0, 0])
        acc[0] += st.size
        acc[1] += st.count
    top = sorted(sites.items(), key=lambda kv: -kv[1][0])[:limit]
    return [f"{size / 1048576:7.2f} MiB {count:8d} blocks  {key}" for key, (size, count) in top]


async def one_daemon(n: int, seconds: float, tick: float, trace: bool = False) -> dict[str, Any]:
    """Run the Daemon with n checks for `seconds`; RSS and per-structure bytes."""
    import bench_daemon_sip as bds

    from nocd.daemon import Daemon

    bds.TICK = tick
    gc.collect()
    rss_imports = rss_mib()
    tmp = Path(tempfile.mkdtemp())
    proc, port = bds.start_responder(tmp)
    try:
        state = tmp / "nocd.db"
        await bds.seed_states(state, n)
        if trace:
            import tracemalloc

            tracemalloc.start(12)
        cfg = bds.build_config(n, port, 30.0, state)
        gc.collect()
        rss_cfg = rss_mib()
        d = Daemon(cfg)
        del cfg
        await d.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # noqa: ASYNC110 - bounded by `end`
            await asyncio.sleep(0.5)
        rss_run = rss_mib()
        assert d.scheduler is not None
        probes = d.scheduler.probes_started
        parts = daemon_parts(d)
        if trace:
            gc.collect()
            top = trace_top(tracemalloc.take_snapshot())
            print("live Python heap by allocation site (tracemalloc):", file=sys.stderr)
            print("\n".join(top), file=sys.stderr)
        await d.stop()
    finally:
        proc.kill()
        proc.wait()
    return {
        "checks": n,
        "rss_imports_mib": rss_imports,
        "rss_config_mib": rss_cfg,
        "rss_running_mib": rss_run,
        "probes": probes,
        "parts": parts,
    }


def daemon_runs(n: int, repeats: int, seconds: float, tick: float) -> None:
    """`repeats` fresh processes each running the daemon; medians."""
    rows = []
    for _ in range(repeats):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "daemon",
                "--checks",
                str(n),
                "--seconds",
                str(seconds),
                "--tick",
                str(tick),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"\n## Daemon running, {n:,} checks, {seconds:.0f} s ({repeats} fresh processes)\n")
    print("| run | probes | RSS imports MiB | + config MiB | running MiB |")
    print("|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rows, 1):
        print(
            f"| {i} | {r['probes']} | {r['rss_imports_mib']:.1f} | {r['rss_config_mib']:.1f} |"
            f" {r['rss_running_mib']:.1f} |"
        )
    print(f"\nmedian RSS running: {statistics.median(r['rss_running_mib'] for r in rows):.1f} MiB")
    print("\n| per-check structure | bytes/check (median) |\n|---|---:|")
    keys = list(rows[0]["parts"])
    total = 0.0
    for k in keys:
        v = statistics.median(r["parts"][k] for r in rows) / n
        total += v
        print(f"| {k} | {v:.0f} |")
    print(f"| **total** | **{total:.0f}** ({total * n / 1048576:.1f} MiB) |")


def main() -> None:
    """Parse arguments; run the parts in fresh processes and print Markdown."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--tick", type=float, default=0.02)
    ap.add_argument(
        "--trace", action="store_true", help="one traced daemon run: top allocation sites"
    )
    ap.add_argument("--one", choices=["config", "daemon"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one == "config":
        r = one_config(args.checks)
        r.pop("_cfg")
        print(json.dumps(r))
        return
    if args.trace:
        asyncio.run(one_daemon(args.checks, args.seconds, args.tick, trace=True))
        return
    if args.one == "daemon":
        print(json.dumps(asyncio.run(one_daemon(args.checks, args.seconds, args.tick))))
        return
    print(
        f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" {time.strftime('%Y-%m-%d %H:%M')}"
    )
    config_runs(args.checks, args.repeats)
    if args.daemon:
        daemon_runs(args.checks, args.repeats, args.seconds, args.tick)


if __name__ == "__main__":
    main()
