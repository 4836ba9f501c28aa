"""SLA clock: response/resolve due times across weekends, holidays, DST and time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nocd.calendar_config import CalendarConfig
from nocd.configload import load_text
from nocd.inventory import ResponseTargets, SupportPlan
from nocd.model import Severity
from nocd.store import Store
from nocd.tickets import sla

WEEKDAYS = {d: ("09:00-18:00",) for d in ("mon", "tue", "wed", "thu", "fri")}
PARIS = CalendarConfig(timezone="Europe/Paris", weekly=WEEKDAYS, holidays=({"country": "FR"},))
NEW_YORK = CalendarConfig(
    timezone="America/New_York", weekly=WEEKDAYS, holidays=({"country": "US"},)
)
TOKYO = CalendarConfig(timezone="Asia/Tokyo", weekly=WEEKDAYS, holidays=({"country": "JP"},))
BRONZE = ResponseTargets.model_validate(
    {"critical": "1h", "degraded": "12h", "low": "next_business_day"}
)
PLATINUM = ResponseTargets.model_validate({"critical": "15m", "degraded": "1h", "low": "4h"})


def ts(text: str) -> float:
    """An ISO time with offset → epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def z(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%MZ")


CASES = [
    # (calendar, targets, severity, opened (local, with offset), response due (UTC))
    # 24x7: wall time, weekends count.
    (None, PLATINUM, Severity.CRITICAL, "2026-01-03T11:00+01:00", "2026-01-03T10:15Z"),
    (None, BRONZE, Severity.LOW, "2026-01-03T11:00+01:00", "2026-01-04T10:00Z"),
    # Inside hours: plain addition.
    (PARIS, BRONZE, Severity.CRITICAL, "2026-01-13T10:00+01:00", "2026-01-13T10:00Z"),
    # Ends exactly at closing time: due at 18:00 the same day, not the next morning.
    (PARIS, BRONZE, Severity.CRITICAL, "2026-01-13T17:00+01:00", "2026-01-13T17:00Z"),
    # Friday 17:30 Paris: 30 min on Friday, 30 min on Monday morning.
    (PARIS, BRONZE, Severity.CRITICAL, "2026-01-09T17:30+01:00", "2026-01-12T08:30Z"),
    # Opened on Saturday night: the clock starts Monday 09:00.
    (PARIS, BRONZE, Severity.CRITICAL, "2026-01-10T04:00+01:00", "2026-01-12T09:00Z"),
    # New Year's Eve 17:30, 1 Jan is a French holiday: the rest runs on Friday 2 Jan.
    (PARIS, BRONZE, Severity.CRITICAL, "2025-12-31T17:30+01:00", "2026-01-02T08:30Z"),
    # 12 h of business time from Monday 09:00: 9 h Monday, 3 h Tuesday.
    (PARIS, BRONZE, Severity.DEGRADED, "2026-01-12T09:00+01:00", "2026-01-13T11:00Z"),
    # Spring-forward weekend (29 Mar 2026): Monday 09:30 is CEST, UTC+2.
    (PARIS, BRONZE, Severity.CRITICAL, "2026-03-27T17:30+01:00", "2026-03-30T07:30Z"),
    # Easter Monday (6 Apr 2026) is a French holiday: Tuesday 09:30 CEST.
    (PARIS, BRONZE, Severity.CRITICAL, "2026-04-03T17:30+02:00", "2026-04-07T07:30Z"),
    # Next business day = by the close of the next open day.
    (PARIS, BRONZE, Severity.LOW, "2026-01-08T15:00+01:00", "2026-01-09T17:00Z"),
    (PARIS, BRONZE, Severity.LOW, "2026-01-09T20:00+01:00", "2026-01-12T17:00Z"),
    (PARIS, BRONZE, Severity.LOW, "2026-01-10T12:00+01:00", "2026-01-12T17:00Z"),
    # Opened before Monday's opening: the next business day is Tuesday, not Monday.
    (PARIS, BRONZE, Severity.LOW, "2026-01-12T07:00+01:00", "2026-01-13T17:00Z"),
    # Unknown severity is counted as low.
    (PARIS, BRONZE, Severity.UNKNOWN, "2026-01-08T15:00+01:00", "2026-01-09T17:00Z"),
    # New York: Friday 3 Jul 2026 is Independence Day (observed); EDT is UTC-4.
    (NEW_YORK, BRONZE, Severity.CRITICAL, "2026-07-02T17:30-04:00", "2026-07-06T13:30Z"),
    # Tokyo: Monday 12 Jan 2026 is Coming of Age Day; the same UTC instant as a Paris
    # Friday morning is Friday evening in Tokyo.
    (TOKYO, BRONZE, Severity.CRITICAL, "2026-01-09T17:30+09:00", "2026-01-13T00:30Z"),
    (PARIS, BRONZE, Severity.CRITICAL, "2026-01-09T09:30+01:00", "2026-01-09T09:30Z"),
]


@pytest.mark.parametrize(("cal", "targets", "severity", "opened", "expected"), CASES)
def test_response_due_table(
    cal: CalendarConfig | None,
    targets: ResponseTargets,
    severity: Severity,
    opened: str,
    expected: str,
) -> None:
    assert z(sla.due(targets, severity, cal, ts(opened))) == expected


CONFIG = """
support_hours:
  paris:
    timezone: Europe/Paris
    weekly: {mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"],
             thu: ["09:00-18:00"], fri: ["09:00-18:00"]}
    holidays: [{country: FR}]
support_plans:
  bronze:
    hours: paris
    response: {critical: 1h, degraded: 12h, low: next_business_day}
    resolve: {critical: 8h, degraded: 3d, low: 5d}
    priority: {critical: P2, degraded: P3, low: P4}
  platinum:
    response: {critical: 15m, degraded: 1h, low: 4h}
customers:
  small: {support_plan: bronze, partner: Example Reseller}
  big: {support_plan: platinum}
  none: {}
"""


def test_plan_priority_and_dues_from_config() -> None:
    cfg = load_text(CONFIG)
    name, plan = sla.plan_of(cfg, "small")
    assert name == "bronze"
    assert sla.priority(plan, Severity.CRITICAL) == "P2"  # bronze ranks its critical as P2
    opened = ts("2026-01-09T17:30+01:00")
    assert z(sla.response_due(cfg, plan, Severity.CRITICAL, opened)) == "2026-01-12T08:30Z"
    resolve = sla.resolve_due(cfg, plan, Severity.CRITICAL, opened)
    assert resolve is not None and z(resolve) == "2026-01-12T15:30Z"  # 30m Fri + 7h30 Mon
    name, plan = sla.plan_of(cfg, "big")
    assert (name, sla.priority(plan, Severity.CRITICAL)) == ("platinum", "P1")
    assert sla.resolve_due(cfg, plan, Severity.CRITICAL, opened) is None
    # No plan (or no customer): the defaults, 24x7, standard priorities.
    for customer in ("none", None, "unknown"):
        name, plan = sla.plan_of(cfg, customer)
        assert name is None and plan == SupportPlan()
        assert sla.priority(plan, Severity.DEGRADED) == "P2"
        assert sla.response_due(cfg, plan, Severity.CRITICAL, opened) == opened + 900


def test_invalid_targets_are_config_errors() -> None:
    from nocd.configload import ConfigError

    with pytest.raises(ConfigError, match=r"response\.low: invalid target 'tomorrow'"):
        load_text("support_plans:\n  x:\n    response: {low: tomorrow}\n")
    with pytest.raises(ConfigError, match=r"priority\.critical"):
        load_text("support_plans:\n  x:\n    priority: {critical: P0}\n")


async def test_sla_snapshot_counts() -> None:
    store = await Store.open(":memory:")
    now = 1_767_261_600.0
    rows = [
        # status, priority, response_due, responded_at, resolved_at, resolve_due
        ("open", "P1", now + 300, None, None, None),  # waiting, 5 min left
        ("open", "P1", now + 900, None, None, None),  # later one: not the minimum
        ("open", "P2", now - 60, None, None, None),  # late: a breach already
        ("acknowledged", "P2", now - 600, now - 700, None, now - 1),  # met; resolve breached
        ("acknowledged", "P3", now - 600, now - 500, None, None),  # acked late: breach
        ("resolved", "P1", now - 5000, None, now - 6000, now - 5500),  # resolved in time
        ("closed", "P4", now - 5000, None, now - 4000, None),  # resolved late, never acked
    ]
    async with store.transaction() as conn:
        for i, (status, prio, due, responded, resolved, rdue) in enumerate(rows):
            await conn.execute(
                "INSERT INTO incidents (id, code, group_key, severity, state, title, opened_at) "
                "VALUES (?, ?, ?, 'critical', 'triggered', 't', 0)",
                (i + 1, f"C{i}", f"g{i}"),
            )
            await conn.execute(
                "INSERT INTO tickets (incident_id, fingerprint, status, priority, worst_priority,"
                " title, description, opened_at, response_due, responded_at, resolved_at,"
                " resolve_due, updated_at) VALUES (?, ?, ?, ?, ?, 't', 'd', 0, ?, ?, ?, ?, 0)",
                (i + 1, f"f{i}", status, prio, prio, due, responded, resolved, rdue),
            )
    snap = await sla.sla_snapshot(store.reader, now)
    await store.close()
    assert snap.open_by_priority == {"P1": 2, "P2": 2, "P3": 1, "P4": 0}
    assert snap.seconds_to_response_due == {"P1": 300.0, "P2": -60.0}
    assert snap.response_breaches_total == 3
    assert snap.resolve_breaches_total == 1
    assert snap.rfo_overdue == 0
