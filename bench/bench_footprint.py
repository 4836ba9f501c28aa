"""Footprint: idle RSS and CPU of `nocd run` with the demo config; start-up time to READY with
10,000 checks; config load split into YAML parse (C safe loader vs round-trip) and pydantic.

Run: .venv/bin/python bench/bench_footprint.py [--idle 60] [--checks 10000] [--repeats 3]

nocd runs as a subprocess (`python -m nocd run -c FILE`) exactly as systemd starts it, with
NOTIFY_SOCKET pointing at a datagram socket of this script: READY=1 ends the start-up timer.
CPU from /proc/PID/stat (utime+stime), RSS from /proc/PID/status. Ports are ephemeral
loopback ports; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """An unused loopback port."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """utime + stime of `pid` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss(pid: int) -> float:
    """VmRSS of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def demo_config(tmp: Path) -> Path:
    """config/demo.yaml with its ports and state path moved to free/temporary ones."""
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = text.replace("127.0.0.1:9469", f"127.0.0.1:{free_port()}")
    text = text.replace("127.0.0.1:5062", f"127.0.0.1:{free_port()}")
    text = re.sub(r"state_path: .*", f"state_path: {tmp}/demo.db", text)
    path = tmp / "demo.yaml"
    path.write_text(text)
    return path


def big_config(tmp: Path, n: int) -> Path:
    """n sip_options checks (half UDP, half TCP) and nothing else, as YAML."""
    lines = [
        "daemon:",
        f"  listen: 127.0.0.1:{free_port()}",
        f"  state_path: {tmp}/big.db",
        "  log_format: json",
        "  log_level: warning",
        "sites:",
        "  main-street: {name: Main Street, timezone: America/New_York}",
        "checks:",
    ]
    port = free_port(socket.SOCK_DGRAM)  # nothing answers: probes fail after READY, harmless
    for i in range(n):
        lines += [
            f"  - name: phone-{i}",
            "    type: sip_options",
            f"    target: sip:127.0.0.1:{port}",
            "    site: main-street",
            "    interval: 30s",
            "    timeout: 5s",
        ]
    path = tmp / "big.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(config: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], socket.socket, float]:
    """Start `nocd run` with a NOTIFY_SOCKET; returns (process, socket, start time)."""
    sock_path = tmp / f"notify-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nocd", "run", "-c", str(config)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, sock, t0


def wait_ready(sock: socket.socket, limit: float) -> float | None:
    """Seconds until READY=1 arrives (None after `limit`)."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        sock.settimeout(max(0.01, end - time.perf_counter()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return None
        if b"READY=1" in data.split(b"\n"):
            return time.perf_counter()
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, bounded wait, then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def idle(tmp: Path, seconds: float) -> dict[str, float]:
    """Start with the demo config, wait 15 s, then CPU % and RSS over `seconds`."""
    proc, sock, t0 = start(demo_config(tmp), tmp)
    try:
        ready = wait_ready(sock, 60)
        if ready is None:
            raise RuntimeError("demo daemon never became READY")
        time.sleep(15)
        c0, w0 = proc_cpu(proc.pid), time.perf_counter()
        time.sleep(seconds)
        cpu = proc_cpu(proc.pid) - c0
        wall = time.perf_counter() - w0
        return {"ready_s": ready - t0, "cpu_pct": 100 * cpu / wall, "rss_mib": proc_rss(proc.pid)}
    finally:
        stop(proc)
        sock.close()


def startup(tmp: Path, config: Path) -> dict[str, float]:
    """Process start → READY=1 with a big config; CPU and RSS at READY."""
    proc, sock, t0 = start(config, tmp)
    try:
        ready = wait_ready(sock, 180)
        if ready is None:
            raise RuntimeError("daemon never became READY")
        return {
            "ready_s": ready - t0,
            "cpu_s": proc_cpu(proc.pid),
            "rss_mib": proc_rss(proc.pid),
        }
    finally:
        stop(proc)
        sock.close()


def config_load(config: Path) -> dict[str, float]:
    """In-process: C safe-loader parse, round-trip parse, pydantic validation, whole load."""
    from ruamel.yaml import YAML

    from nocd.config import Config
    from nocd.configload import _plain, load_file

    text = config.read_text()
    t = time.perf_counter()
    data = YAML(typ="safe").load(text)
    safe = time.perf_counter() - t
    t = time.perf_counter()
    YAML(typ="rt").load(text)
    rt = time.perf_counter() - t
    plain = _plain(data)
    t = time.perf_counter()
    Config.model_validate(plain)
    validate = time.perf_counter() - t
    t = time.perf_counter()
    load_file(config)
    whole = time.perf_counter() - t
    return {
        "yaml_c_safe_s": safe,
        "yaml_roundtrip_s": rt,
        "pydantic_s": validate,
        "load_file_s": whole,
    }


def med(rows: list[dict[str, float]], key: str) -> str:
    """median (min–max) of `key` over rows."""
    v = [r[key] for r in rows]
    return f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})"


def main() -> None:
    """Parse arguments, run each part `--repeats` times, print Markdown."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    ap.add_argument("--checks", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="idle,startup,load")
    args = ap.parse_args()
    parts = args.parts.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, repeats {args.repeats}")
    out: dict[str, Any] = {}
    if "idle" in parts:
        rows = [idle(tmp / f"i{i}", args.idle) for i in range(args.repeats) if _mk(tmp / f"i{i}")]
        out["idle"] = rows
        print(
            f"idle (demo config, {args.idle:.0f} s): CPU % of a core {med(rows, 'cpu_pct')},"
            f" RSS MiB {med(rows, 'rss_mib')}, start → READY s {med(rows, 'ready_s')}"
        )
    if "startup" in parts:
        rows = [
            startup(tmp / f"s{i}", big_config(tmp / f"s{i}", args.checks))
            for i in range(args.repeats)
            if _mk(tmp / f"s{i}")
        ]
        print(
            f"start-up with {args.checks} checks: start → READY s {med(rows, 'ready_s')},"
            f" CPU s {med(rows, 'cpu_s')}, RSS MiB at READY {med(rows, 'rss_mib')}"
        )
    if "load" in parts:
        big = big_config(tmp, args.checks) if _mk(tmp) else tmp
        rows = [config_load(big) for _ in range(args.repeats)]
        print(
            f"config load of {args.checks} checks, s: YAML C safe loader {med(rows, 'yaml_c_safe_s')},"
            f" YAML round-trip {med(rows, 'yaml_roundtrip_s')}, pydantic {med(rows, 'pydantic_s')},"
            f" load_file total {med(rows, 'load_file_s')}"
        )


def _mk(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


if __name__ == "__main__":
    main()
