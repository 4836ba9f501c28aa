"""CI's share of the fuzzing (issue #10): past findings, the seeds, and a short atheris run.

The full run (>= 1,000,000 inputs) is `tests/reliability/run_full.sh`; its figures are in
tests/reliability/RESULTS.md. Here: every input in tests/data/fuzz_regressions and
tests/data/fuzz_seeds and the RFC 4475 messages through every target (no exception other
than the parsers' own may escape), then a 2,000-input coverage-guided run of the real driver.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.fuzz_targets import make_targets

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
INPUTS = sorted(
    p
    for folder in ("fuzz_regressions", "fuzz_seeds", "rfc4475")
    for p in (DATA / folder).iterdir()
    if p.suffix in (".dat", ".bin", ".txt", ".json")
)
NAMES = ["sip", "digest", "alertmanager", "trap", "snmp_v2c"]


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Callable[[bytes], None]]]:
    made = make_targets(NAMES)
    yield made
    trap = made["trap"]
    trap.loop.run_until_complete(trap.rx.stop())  # type: ignore[attr-defined]
    trap.sink.close()  # type: ignore[attr-defined]
    trap.loop.close()  # type: ignore[attr-defined]


def test_there_are_regressions_and_seeds() -> None:
    names = {p.parent.name for p in INPUTS}
    assert names == {"fuzz_regressions", "fuzz_seeds", "rfc4475"}
    assert len(INPUTS) >= 70


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parent.name}/{p.name}" for p in INPUTS])
def test_every_known_input_through_every_target(
    targets: dict[str, Callable[[bytes], None]], path: Path
) -> None:
    data = path.read_bytes()
    for fn in targets.values():
        fn(data)  # raises only on a finding


def test_the_trap_seeds_are_real_traps(targets: dict[str, Callable[[bytes], None]]) -> None:
    """The captured datagrams authenticate and decode (else the trap target fuzzes nothing)."""
    trap = targets["trap"]
    before = trap.rx.received  # type: ignore[attr-defined]
    seeds = [p for p in sorted((DATA / "fuzz_seeds").glob("*.bin")) if "reply" not in p.name]
    for path in seeds:
        trap(path.read_bytes())
    assert trap.rx.received - before == len(seeds)  # type: ignore[attr-defined]


def test_a_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.fuzz_sip",
            "--runs",
            "2000",
            "--seconds",
            "120",
            "--report",
            str(report),
            "--artifacts",
            str(tmp_path / "found"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), proc.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["inputs"] == 2000
    assert result["unexpected_exceptions"] == 0, result["unexpected_examples"]
    assert result["retime_error"] is None
    assert set(result["targets"]) == set(NAMES)
    assert result["trap_receiver_counters"]["received"] > 0  # seeds reached the rules
    # Our parsers stay far below 10 ms (full run: 2.9 ms worst). pysnmp's decoding of a trap
    # reached 8 ms in the full run: it is reported there, not allowed to flake CI here.
    for name in ("sip", "digest", "alertmanager", "snmp_v2c"):
        assert result["targets"][name]["uninstrumented_retimed"]["max_ms"] <= 10.0, name
    if result["slow_inputs_over_10ms"] == 0:
        assert proc.returncode == 0, proc.stderr[-3000:]
