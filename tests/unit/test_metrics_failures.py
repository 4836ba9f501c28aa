"""Per-check failure counters: exported like a Counter, untracked by the GC, pruned on reload."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from nocd.metrics import Metrics
from nocd.model import FailureClass, Observation
from nocd.state import CheckState


def test_failures_are_counted_exported_and_pruned_on_reload() -> None:
    m = Metrics(CollectorRegistry())
    m.set_checks(["pbx-1", "pbx-2"])
    down = CheckState()
    for _ in range(3):
        m.observe("pbx-1", None, Observation.failed(FailureClass.TIMEOUT, "no SIP response"), down)
    m.observe("pbx-2", None, Observation.failed(FailureClass.REFUSED, "ICMP"), down)
    m.observe("pbx-2", None, Observation.success("200 OK"), down)
    text = generate_latest(m.registry).decode()
    assert 'nocd_check_failures_total{check="pbx-1",failure="timeout"} 3.0' in text
    assert 'nocd_check_failures_total{check="pbx-2",failure="refused"} 1.0' in text
    assert "# TYPE nocd_check_failures_total counter" in text
    assert m.check_failures.value("pbx-2", "timeout") == 0.0
    # An outage of many checks must not leave GC-tracked objects per series behind.
    assert not gc.is_tracked(m.check_failures.counts["timeout"])
    m.set_checks(["pbx-2"])  # reload without pbx-1: its series go
    text = generate_latest(m.registry).decode()
    assert 'check="pbx-1"' not in text.split("nocd_check_failures_total", 1)[1].split("# HELP")[0]
    assert 'nocd_check_failures_total{check="pbx-2",failure="refused"} 1.0' in text
