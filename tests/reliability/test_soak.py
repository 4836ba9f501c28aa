"""Soak, CI size: `nocd run` with 1,000 healthy sip_options checks while the responder drops
2 % of its replies raises no false hard failure and no incident, and does not grow.

About 80 s. The full run (10,000 checks, 30 minutes, 0.5 % dropped) is
`python -m tests.reliability.soak`, a step of tests/reliability/run_full.sh; figures in
tests/reliability/RESULTS.md. The interval is 10 s here (30 s in the full run) so 75 s hold
seven intervals; speed and lag are reported, not asserted (benchmarks measure speed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.soak import parse_metrics, quantile, run_soak, top_bucket

CHECKS = int(os.environ.get("NOCD_SOAK_CHECKS", "1000"))
DROP = 0.02
INTERVAL = 10.0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_lost_replies_raise_no_false_alarm_and_memory_stays_flat(tmp_path: Path) -> None:
    r = await run_soak(tmp_path, CHECKS, 1.25, DROP, interval=INTERVAL, warmup=30, seed=7)
    summary = {k: v for k, v in r.items() if k != "checks_seen_down"}
    # Loss really happened, at about the asked rate, and the daemon really probed throughout.
    received = r["responder"]["received"]
    assert 0.01 * received <= r["replies_dropped"] <= 0.03 * received, summary
    assert r["probes"] >= 0.8 * r["probes_expected"], summary
    # Every check is healthy: a hard failure, a down check or an incident is a false alarm.
    assert r["false_hard_failures"] == 0, summary
    assert r["checks_seen_down"] == [], r["checks_seen_down"]
    hard = {k: v for k, v in r["state_transitions"].items() if k in ("down", "up", "severity")}
    assert hard == {}, summary
    assert r["incidents_opened"] == 0, summary
    # Flat after warm-up (the first interval creates every check's state).
    assert r["measured_from_warmup"], summary
    assert r["rss_growth_pct"] <= 10.0, summary
    # The loop never stalled anywhere near systemd's WatchdogSec=30s; the lag metric is live.
    assert r["watchdog_max_gap_s"] < 15.0, summary
    assert r["loop_lag_ms"]["samples"] > 0, summary
    assert r["daemon_alive_to_the_end"] and r["daemon_exit_code"] == 0, summary
    assert r["daemon_log_levels"].get("error", 0) == 0, summary


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    end = {0.1: 90.0, 0.2: 99.0, 0.5: 100.0, float("inf"): 100.0}
    p99, bound = quantile(end, {}, 0.99)
    assert p99 == pytest.approx(0.2) and bound == 0.2
    assert quantile(end, {}, 0.5)[0] == pytest.approx(0.1 * 50 / 90)
    # Only what happened between the two scrapes counts.
    start = {0.1: 90.0, 0.2: 90.0, 0.5: 90.0, float("inf"): 90.0}
    assert quantile(end, start, 0.99)[1] == 0.5
    assert top_bucket(end, start) == 0.5
    assert top_bucket(end, {}) == 0.5


def test_parse_metrics_reads_the_series_the_soak_judges() -> None:
    text = "\n".join(
        [
            "# HELP nocd_check_up x",
            'nocd_check_up{check="a"} 1.0',
            'nocd_check_up{check="b"} 0.0',
            'nocd_check_probes_total{check="a"} 3.0',
            'nocd_check_probes_total{check="b"} 4.0',
            'nocd_check_failures_total{check="b",failure="timeout"} 2.0',
            'nocd_state_transitions_total{kind="down"} 1.0',
            'nocd_state_transitions_total{kind="flap_start"} 5.0',
            'nocd_incidents_opened_total{severity="critical"} 1.0',
            'nocd_event_loop_lag_seconds_bucket{le="0.05"} 7.0',
            'nocd_event_loop_lag_seconds_bucket{le="+Inf"} 8.0',
            "nocd_event_loop_lag_max_seconds 0.3",
        ]
    )
    m = parse_metrics(text)
    assert (m["probes"], m["down"], m["incidents"], m["lag_max"]) == (7.0, 1.0, 1.0, 0.3)
    assert m["checks_down"] == ["b"] and m["failures"] == {"timeout": 2.0}
    assert m["transitions"] == {"down": 1.0, "flap_start": 5.0}
    assert m["lag"] == {0.05: 7.0, float("inf"): 8.0}
