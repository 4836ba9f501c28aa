"""The SLA clock: response/resolve due times from the customer's plan, and SLA numbers.

Due times count open time of the plan's `hours` calendar (paging.hours, the one calendar
implementation) or wall time for `24x7`. `next_business_day` means "by the end of the
first business day after the day the ticket opened" (local to the calendar); on a 24x7
plan it means 24 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiosqlite

from nocd.calendar_config import CalendarConfig
from nocd.config import Config
from nocd.inventory import NEXT_BUSINESS_DAY, ResponseTargets, SupportPlan
from nocd.model import Severity
from paging import hours

PRIORITIES = ("P1", "P2", "P3", "P4")
DEFAULT_PLAN = SupportPlan()


def plan_of(config: Config, customer: str | None) -> tuple[str | None, SupportPlan]:
    """The support plan (name, plan) of a customer; the defaults when it has none."""
    cust = config.customers.get(customer or "")
    name = cust.support_plan if cust else None
    if name and name in config.support_plans:
        return name, config.support_plans[name]
    return None, DEFAULT_PLAN


def sla_class(severity: Severity) -> str:
    """The plan's class for a severity: critical, degraded or low (everything else)."""
    if severity in (Severity.CRITICAL, Severity.DEGRADED):
        return str(severity)
    return "low"


def priority(plan: SupportPlan, severity: Severity) -> str:
    """P1–P4 for a severity under a plan (OK/unknown are P4)."""
    if severity in (Severity.OK, Severity.UNKNOWN):
        return "P4"
    return str(getattr(plan.priority, sla_class(severity)))


def calendar(config: Config, plan: SupportPlan) -> CalendarConfig | None:
    """The plan's support-hours calendar (None = 24x7)."""
    return hours.resolve(config.support_hours, plan.hours)


def due(
    targets: ResponseTargets, severity: Severity, cal: CalendarConfig | None, start: float
) -> float:
    """When the target for `severity` runs out, counted from `start` in `cal`'s open time."""
    target = getattr(targets, sla_class(severity))
    begin = datetime.fromtimestamp(start, UTC)
    if target == NEXT_BUSINESS_DAY:
        return next_business_day_end(cal, begin).timestamp()
    return hours.add_open_time(cal, begin, float(target)).timestamp()


def next_business_day_end(cal: CalendarConfig | None, start: datetime) -> datetime:
    """The close of the first open local day after `start`'s local day (24 h when 24x7)."""
    if cal is None:
        return start + timedelta(days=1)
    zone = ZoneInfo(cal.timezone)
    today = start.astimezone(zone).date()
    day = None
    end = None
    for s, e in hours.intervals(cal, start):
        local = s.astimezone(zone).date()
        if local <= today:
            continue
        if day is None:
            day = local
        elif local != day:
            break
        end = e
    if end is None:
        raise hours.NoTransition(f"calendar never opens after {start.isoformat()}")
    return end


def response_due(config: Config, plan: SupportPlan, severity: Severity, start: float) -> float:
    """Response-due time for a ticket of `severity` opened (or re-classed) at `start`."""
    return due(plan.response, severity, calendar(config, plan), start)


def resolve_due(
    config: Config, plan: SupportPlan, severity: Severity, start: float
) -> float | None:
    """Resolve-due time, when the plan sets resolve targets."""
    if plan.resolve is None:
        return None
    return due(plan.resolve, severity, calendar(config, plan), start)


@dataclass(frozen=True, slots=True)
class SlaSnapshot:
    """SLA numbers for metrics: open tickets, time left to respond, breaches, overdue RFOs."""

    open_by_priority: dict[str, int]
    # Per priority: seconds until the earliest response-due of unanswered open tickets
    # (negative when already late); absent when none is waiting.
    seconds_to_response_due: dict[str, float]
    response_breaches_total: int
    resolve_breaches_total: int
    rfo_overdue: int


async def sla_snapshot(conn: aiosqlite.Connection, now: float) -> SlaSnapshot:
    """Read the SLA numbers from the ticket store at `now`."""
    open_by = dict.fromkeys(PRIORITIES, 0)
    async with conn.execute(
        "SELECT priority, COUNT(*) FROM tickets WHERE status IN ('open','acknowledged') "
        "GROUP BY priority"
    ) as cur:
        for p, n in await cur.fetchall():
            open_by[str(p)] = int(n)
    to_due: dict[str, float] = {}
    async with conn.execute(
        "SELECT priority, MIN(response_due) FROM tickets WHERE status='open' "
        "AND responded_at IS NULL AND response_due IS NOT NULL GROUP BY priority"
    ) as cur:
        for p, d in await cur.fetchall():
            to_due[str(p)] = float(d) - now
    # A breach is a response (an ack, else the resolve) later than due, or none yet past due.
    response = await _count(
        conn,
        "response_due IS NOT NULL AND COALESCE(responded_at, resolved_at, ?) > response_due",
        now,
    )
    resolve = await _count(
        conn,
        "resolve_due IS NOT NULL AND COALESCE(resolved_at, ?) > resolve_due",
        now,
    )
    overdue = await _count(conn, "rfo_delivered_at IS NULL AND rfo_due < ?", now)
    return SlaSnapshot(open_by, to_due, response, resolve, overdue)


async def _count(conn: aiosqlite.Connection, where: str, now: float) -> int:
    async with conn.execute(f"SELECT COUNT(*) FROM tickets WHERE {where}", (now,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0
