"""Coverage-guided fuzzing (atheris) of what nocd parses off the network, with timings.

Every input goes through each cheap network parser nocd runs on untrusted bytes:

- `sip`: checks/sip/message.parse (datagram and stream framing) and the accessors the probes
  call on a parsed reply (header lists, params, Via, CSeq, branch, digest challenges of a
  401/407);
- `digest`: checks/sip/digest.parse_challenge on the input as a header value, then the
  response computed for it;
- `alertmanager`: the webhook body validation (nocd/intake/alertmanager.WebhookPayload) and
  the rule matching of an accepted payload;
- `trap`: the input as a UDP datagram handed to the real trap receiver's pysnmp engine
  (v1/v2c communities and a v3 user configured, as nocd/intake/traps.py sets them up);
- `snmp_v2c`: the input as a reply to the snmp check's v2c GET (checks/snmp_ber: peek, then
  the Response-PDU).

The inputs in tests/data/fuzz_regressions (past findings) run whole first, then libFuzzer
mutates from the seeds. An exception other than the parser's own documented error is a finding: it is counted, the
input saved under artifacts/fuzz/, and the run goes on.

Timing: coverage instrumentation slows pure-Python loops tens of times, so the fuzzing pass
only screens. Per target it keeps the slowest inputs whose instrumented wall time was over
1 ms (up to 2,000); at the end a child process without instrumentation re-times each of them
(fastest of 5 runs on the thread's CPU clock: the machine is shared). An input still over
10 ms there is a slow finding. `max_parse_ms` is the slowest re-timed input (or 1 ms where no
input even crossed the screening line); the instrumented figures are reported too.

    python -m tests.reliability.fuzz_sip --runs 1000000 --seconds 5400
    python -m tests.reliability.fuzz_sip --runs 5000 --report out.json   # a smoke run

Prints a JSON report on stdout (and to --report); exit 1 on any finding.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [ROOT / "tests" / "data" / "rfc4475", ROOT / "tests" / "data" / "fuzz_seeds"]
REGRESSIONS = ROOT / "tests" / "data" / "fuzz_regressions"
SLOW_MS = 10.0  # the target: no input takes longer than this to parse
SUSPECT_MS = 1.0  # instrumented wall time above which an input is re-timed uninstrumented
KEEP_SUSPECTS = 2000  # the slowest inputs kept per target for re-timing


def _drop(*_: Any) -> Any:
    raise structlog.DropEvent


class Stats:
    """Per-target timings, findings, the slowest inputs and the input budget."""

    def __init__(self, names: list[str], runs: int, seconds: float, out: Path) -> None:
        self.wall: dict[str, array[float]] = {n: array("d") for n in names}
        # per target: a min-heap of (seconds, sequence, input) holding the slowest inputs
        self.suspects: dict[str, list[tuple[float, int, bytes]]] = {n: [] for n in names}
        self.unexpected: list[dict[str, Any]] = []
        self.unexpected_count = 0
        self.inputs = 0
        self.runs = runs
        self.seconds = seconds
        self.started = time.monotonic()
        self.out = out

    def save(self, kind: str, target: str, data: bytes) -> str:
        """Keep an input that found something; returns its path."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{kind}-{target}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
        path.write_bytes(data)
        return str(path)

    def suspect(self, target: str, elapsed: float, data: bytes) -> None:
        """Remember a slow-looking input (the slowest KEEP_SUSPECTS per target)."""
        heap = self.suspects[target]
        item = (elapsed, self.inputs, data)
        if len(heap) < KEEP_SUSPECTS:
            heapq.heappush(heap, item)
        elif elapsed > heap[0][0]:
            heapq.heapreplace(heap, item)

    def done(self) -> bool:
        """The input budget or the time budget is spent."""
        return self.inputs >= self.runs or time.monotonic() - self.started > self.seconds

    def report(self) -> dict[str, Any]:
        """Figures measured in the instrumented fuzzing process."""
        targets = {}
        for name, times in self.wall.items():
            ordered = sorted(times)
            targets[name] = {
                "inputs": len(ordered),
                "instrumented_median_ms": _ms(_quantile(ordered, 0.5), 4),
                "instrumented_p999_ms": _ms(_quantile(ordered, 0.999), 3),
                "instrumented_max_ms": _ms(ordered[-1] if ordered else 0.0, 3),
                "instrumented_over_1ms": sum(1 for t in ordered if t * 1000 > SUSPECT_MS),
            }
        return {
            "inputs": self.inputs,
            "seconds": round(time.monotonic() - self.started, 1),
            "targets": targets,
            "unexpected_exceptions": self.unexpected_count,
            "unexpected_examples": self.unexpected[:20],
        }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _ms(seconds: float, digits: int) -> float:
    return round(seconds * 1000, digits)


def make_one_input(
    targets: dict[str, Callable[[bytes], None]], stats: Stats, finish: Callable[[], None]
) -> Callable[[bytes], None]:
    """The per-input callback libFuzzer calls: every target, timed, findings recorded."""

    def one_input(data: bytes) -> None:
        for name, fn in targets.items():
            t0 = time.perf_counter()
            try:
                fn(data)
            except Exception as exc:  # noqa: BLE001 - what we are here to find
                stats.unexpected_count += 1
                if len(stats.unexpected) < 50:
                    saved = stats.save("crash", name, data)
                    stats.unexpected.append(
                        {"target": name, "error": repr(exc)[:300], "input": saved}
                    )
            elapsed = time.perf_counter() - t0
            stats.wall[name].append(elapsed)
            if elapsed * 1000 > SUSPECT_MS:
                stats.suspect(name, elapsed, data)
        stats.inputs += 1
        if stats.done():
            finish()

    return one_input


def retime(folder: Path) -> dict[str, Any]:
    """Time each saved input on its target without instrumentation (fastest of 5, thread CPU)."""
    from tests.reliability.fuzz_targets import make_targets

    structlog.configure(processors=[_drop])
    files = sorted(folder.glob("*.bin"))
    names = sorted({f.name.split("-", 1)[0] for f in files})
    targets = make_targets(names)
    out: dict[str, Any] = {}
    for name in names:
        times = []
        slow = []
        for f in (f for f in files if f.name.startswith(name + "-")):
            data = f.read_bytes()
            best = float("inf")
            for _ in range(5):
                t0 = time.thread_time_ns()
                try:
                    targets[name](data)
                except Exception:  # noqa: BLE001 - counted by the fuzzing pass
                    pass
                best = min(best, (time.thread_time_ns() - t0) / 1e6)
            times.append(best)
            if best > SLOW_MS:
                slow.append(str(f))
        out[name] = {
            "retimed": len(times),
            "max_ms": round(max(times, default=0.0), 3),
            "over_10ms": len(slow),
            "slow_files": slow[:20],
        }
    return out


def _retime_in_child(stats: Stats, work: Path) -> dict[str, Any]:
    folder = work / "suspects"
    folder.mkdir()
    for name, heap in stats.suspects.items():
        for _, seq, data in heap:
            (folder / f"{name}-{seq}.bin").write_bytes(data)
    if not any(folder.iterdir()):
        return {}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.fuzz_sip", "--retime", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    result: dict[str, Any] = json.loads(proc.stdout)
    for info in result.values():  # keep slow inputs: the suspects folder is temporary
        kept = []
        for path in info["slow_files"]:
            kept.append(stats.save("slow", Path(path).name.split("-")[0], Path(path).read_bytes()))
        info["slow_files"] = kept
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse options, run libFuzzer until the budget is spent, print the report, exit."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000, help="inputs to try")
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop earlier after this long")
    ap.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    ap.add_argument("--max-len", type=int, default=8192, help="largest input libFuzzer makes")
    ap.add_argument("--report", type=Path, help="also write the JSON report here")
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "fuzz")
    ap.add_argument("--targets", default="sip,digest,alertmanager,trap,snmp_v2c")
    ap.add_argument("--retime", type=Path, help=argparse.SUPPRESS)  # the child's mode
    args = ap.parse_args(argv)
    if args.retime:
        print(json.dumps(retime(args.retime)))
        return

    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]'")
    structlog.configure(processors=[_drop])  # the trap receiver logs every unknown trap
    # Coverage feedback from the parsers themselves (and pysnmp's decoders for traps).
    with atheris.instrument_imports(
        include=[
            "checks.sip",
            "checks.alertmanager",
            "checks.trap",
            "checks.snmp_ber",
            "nocd.intake",
            "pyasn1",
        ]
    ):
        from tests.reliability.fuzz_targets import make_targets

    names = [n for n in args.targets.split(",") if n]
    targets = make_targets(names)
    stats = Stats(names, args.runs, args.seconds, args.artifacts)
    work = Path(tempfile.mkdtemp(prefix="nocd-fuzz-"))
    corpus = work / "corpus"
    corpus.mkdir()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def finish() -> None:
        report = stats.report()
        retimed = _retime_in_child(stats, work)
        for name, info in report["targets"].items():
            info["uninstrumented_retimed"] = retimed.get(name, {"retimed": 0, "max_ms": 0.0})
        slow = sum(int(i.get("over_10ms", 0)) for i in retimed.values() if isinstance(i, dict))
        # The max parse time: the slowest re-timed suspect, or, for targets where nothing
        # crossed the suspect line, that line (every other input was faster even instrumented).
        worst = [
            max(i["uninstrumented_retimed"]["max_ms"], 0.0)
            if i["instrumented_over_1ms"]
            else min(i["instrumented_max_ms"], SUSPECT_MS)
            for i in report["targets"].values()
        ]
        report.update(
            {
                "max_parse_ms": max(worst, default=0.0),
                "slow_inputs_over_10ms": slow,
                "retime_error": retimed.get("error"),
                "started": started,
                "command": "python -m tests.reliability.fuzz_sip "
                + " ".join(argv if argv is not None else sys.argv[1:]),
                "new_corpus_inputs": len(list(corpus.iterdir())),
                "python": platform.python_version(),
                "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPU",
                "atheris": importlib.metadata.version("atheris"),
            }
        )
        if "trap" in targets:
            report["trap_receiver_counters"] = targets["trap"].rx.counters()  # type: ignore[attr-defined]
        text = json.dumps(report, indent=2)
        print(text, flush=True)
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(text + "\n")
        shutil.rmtree(work, ignore_errors=True)
        sys.stderr.flush()
        failed = stats.unexpected_count or slow or retimed.get("error")
        # libFuzzer never returns from Fuzz(); leave without running its exit path.
        os._exit(1 if failed else 0)

    one_input = make_one_input(targets, stats, finish)
    # Past findings first, whole (libFuzzer cuts seeds to -max_len; some are 64 KB).
    for path in sorted(REGRESSIONS.glob("*")):
        if path.suffix != ".md":
            one_input(path.read_bytes())
    seeds = [str(p) for p in [*SEEDS, REGRESSIONS] if p.is_dir()]
    atheris.Setup(
        [
            sys.argv[0],
            f"-seed={args.seed}",
            f"-max_len={args.max_len}",
            "-print_final_stats=0",
            str(corpus),
            *seeds,
        ],
        one_input,
    )
    atheris.Fuzz()
    finish()  # libFuzzer stopped on its own: report what was tried


if __name__ == "__main__":
    main()
