"""Crash safety: `nocd run` SIGKILLed at random points during an outage storm loses no page,
doubles no confirmed page and no ticket, and leaves an intact database.

The CI run kills the daemon NOCD_CRASH_KILLS times (default 100, about two minutes on two
cores); tests/reliability/run_full.sh runs 1,000 and more (figures in RESULTS.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.crash_campaign import run_campaign

KILLS = int(os.environ.get("NOCD_CRASH_KILLS", "100"))
SEED = int(os.environ.get("NOCD_CRASH_SEED", "20260110"))


@pytest.mark.slow
@pytest.mark.timeout(max(300, KILLS * 3))
async def test_random_kills_lose_and_double_nothing(tmp_path: Path) -> None:
    report = await run_campaign(tmp_path, KILLS, seed=SEED, sites=40)
    summary = {k: v for k, v in vars(report).items() if k != "details"}
    assert report.kills == KILLS
    assert report.incidents == 40, (summary, report.details)
    assert report.pages_expected == 80
    assert report.pages_lost == 0, report.details
    assert report.pages_duplicated == 0, report.details
    assert report.pages_misattributed == 0, report.details
    assert report.tickets_duplicated == 0 and report.incidents_duplicated == 0, report.details
    assert report.incidents_resolved == 0, report.details  # no site ever came back
    assert report.ticket_creates_missing == 0, report.details
    assert report.integrity == "ok"
    assert report.final_exit == 0, report.details
    assert report.clean, (summary, report.details)
    # The campaign must have hit the interesting windows, or it proved little.
    assert report.deliveries_in_doubt > 0 and report.pages_reconciled > 0, summary
