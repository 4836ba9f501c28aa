"""Incident records as the rest of nocd sees them, and the listener hook for side effects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import aiosqlite

from nocd.model import Severity


class IncidentState(StrEnum):
    """Lifecycle: triggered → acknowledged → resolved."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class IncidentEventKind(StrEnum):
    """What happened to an incident, as told to listeners (tickets, paging)."""

    OPENED = "opened"
    SEVERITY = "severity"  # severity rose or fell
    MEMBERS = "members"  # a check joined, recovered or changed
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Member:
    """One failing (or recovered) check inside an incident."""

    check: str
    severity: Severity
    failure: str
    reason: str
    since: float
    recovered_at: float | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident with its members."""

    id: int
    code: str
    group_key: str
    site: str | None
    customer: str | None
    severity: Severity
    state: IncidentState
    title: str
    cause: str | None
    opened_at: float
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    suppressed: str | None
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """An outage known only in memory: failing checks whose incident the store has not got."""

    group: str
    site: str | None
    customer: str | None
    severity: Severity
    title: str
    suppressed: str | None  # maintenance/silence/flapping that would mute its incident
    checks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PagedFromMemory:
    """What the memory pager did for a group before its incident could be written."""

    code: str  # the incident code already sent in pages: the incident takes it
    acked: tuple[str, str, float] | None = None  # (by, via, at) of an ack taken in memory


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A change to tell listeners about; `previous` is the severity before a change."""

    kind: IncidentEventKind
    at: float
    by: str = "nocd"
    via: str = "monitor"
    text: str = ""
    previous: Severity | None = None


class IncidentListener(Protocol):
    """Reacts to incident changes inside the same transaction (e.g. enqueues outbox rows)."""

    async def on_incident(
        self, conn: aiosqlite.Connection, incident: Incident, event: IncidentEvent
    ) -> None:
        """Handle one change; write only through `conn` so it commits atomically."""
        ...


_COLS = (
    "id, code, group_key, site, customer, severity, state, title, cause, opened_at, "
    "acked_at, acked_by, resolved_at, resolved_by, suppressed"
)


async def load(conn: aiosqlite.Connection, ref: int | str) -> Incident | None:
    """Load an incident by numeric id or by code (case-insensitive).

    A digit string is tried as a code first: databases written before codes excluded
    all-digit ones may hold such codes, and the code is what pages tell people to type.
    """
    row = None
    if isinstance(ref, str):
        async with conn.execute(
            f"SELECT {_COLS} FROM incidents WHERE code=?", (ref.strip().upper(),)
        ) as cur:
            row = await cur.fetchone()
    if row is None and (isinstance(ref, int) or ref.strip().isdigit()):
        async with conn.execute(
            f"SELECT {_COLS} FROM incidents WHERE id=?", (int(ref),)
        ) as cur:
            row = await cur.fetchone()
    if row is None:
        return None
    async with conn.execute(
        "SELECT check_name, severity, failure, reason, since, recovered_at "
        "FROM incident_members WHERE incident_id=? ORDER BY since, check_name",
        (row[0],),
    ) as cur:
        members = tuple(
            Member(m[0], Severity(m[1]), m[2], m[3], m[4], m[5]) for m in await cur.fetchall()
        )
    return Incident(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        Severity(row[5]),
        IncidentState(row[6]),
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        members,
    )
