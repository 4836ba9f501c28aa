"""The built-in ticket store: rows of 0003_tickets.sql, read and written inside transactions."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

import aiosqlite


class TicketStatus(StrEnum):
    """A ticket's lifecycle; `closed` follows `resolved` once nothing more is owed (RFO)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Ticket:
    """One ticket, as stored."""

    id: int
    incident_id: int
    fingerprint: str
    status: TicketStatus
    priority: str
    worst_priority: str
    title: str
    description: str
    facts: dict[str, str]
    plan: str | None
    opened_at: float
    response_due: float | None
    resolve_due: float | None
    responded_at: float | None
    resolved_at: float | None
    closed_at: float | None
    rfo_due: float | None
    rfo_delivered_at: float | None
    rfo_delivered_by: str | None
    seq: int
    updated_at: float

    def changed(self, **kw: Any) -> Ticket:
        """A copy with fields replaced."""
        return replace(self, **kw)


@dataclass(frozen=True, slots=True)
class Comment:
    """One ticket comment: every change to a ticket adds one, numbered by `seq`."""

    ticket_id: int
    seq: int
    at: float
    kind: str
    author: str
    text: str


_COLS = tuple(f.name for f in fields(Ticket))
_SELECT = f"SELECT {', '.join(_COLS)} FROM tickets"


def _row(r: Any) -> Ticket:
    data = dict(zip(_COLS, tuple(r), strict=True))
    data["status"] = TicketStatus(data["status"])
    data["facts"] = json.loads(data["facts"])
    return Ticket(**data)


async def by_incident(conn: aiosqlite.Connection, incident_id: int) -> Ticket | None:
    """The ticket of an incident, if one was opened."""
    async with conn.execute(f"{_SELECT} WHERE incident_id=?", (incident_id,)) as cur:
        row = await cur.fetchone()
    return _row(row) if row else None


async def by_id(conn: aiosqlite.Connection, ticket_id: int) -> Ticket | None:
    """A ticket by its number."""
    async with conn.execute(f"{_SELECT} WHERE id=?", (ticket_id,)) as cur:
        row = await cur.fetchone()
    return _row(row) if row else None


async def listing(
    conn: aiosqlite.Connection, status: TicketStatus | None = None, limit: int = 100
) -> list[Ticket]:
    """Tickets, newest first, optionally of one status (for the API and CLI)."""
    where, args = ("WHERE status=?", (str(status),)) if status else ("", ())
    async with conn.execute(f"{_SELECT} {where} ORDER BY id DESC LIMIT ?", (*args, limit)) as cur:
        return [_row(r) for r in await cur.fetchall()]


async def insert(conn: aiosqlite.Connection, t: Ticket) -> Ticket:
    """Insert a new ticket (its `id` is assigned); the UNIQUE incident_id refuses a second."""
    cols = [c for c in _COLS if c != "id"]
    values = [_value(getattr(t, c)) for c in cols]
    cur = await conn.execute(
        f"INSERT INTO tickets ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
    )
    return t.changed(id=int(cur.lastrowid or 0))


async def save(conn: aiosqlite.Connection, t: Ticket) -> None:
    """Write every field of an existing ticket."""
    cols = [c for c in _COLS if c not in ("id", "incident_id")]
    sets = ", ".join(f"{c}=?" for c in cols)
    await conn.execute(
        f"UPDATE tickets SET {sets} WHERE id=?", [*(_value(getattr(t, c)) for c in cols), t.id]
    )


def _value(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict) else v


async def add_comment(conn: aiosqlite.Connection, c: Comment) -> None:
    """Append a comment (its seq is the ticket's operation number)."""
    await conn.execute(
        "INSERT INTO ticket_comments (ticket_id, seq, at, kind, author, text) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (c.ticket_id, c.seq, c.at, c.kind, c.author, c.text),
    )


async def comments(conn: aiosqlite.Connection, ticket_id: int) -> list[Comment]:
    """A ticket's comments, oldest first."""
    async with conn.execute(
        "SELECT ticket_id, seq, at, kind, author, text FROM ticket_comments "
        "WHERE ticket_id=? ORDER BY seq",
        (ticket_id,),
    ) as cur:
        return [Comment(*tuple(r)) for r in await cur.fetchall()]


async def provider_id(conn: aiosqlite.Connection, ticket_id: int, sink: str) -> str | None:
    """The id a sink gave this ticket (Jira key, Message-ID …), once known."""
    async with conn.execute(
        "SELECT provider_id FROM ticket_sinks WHERE ticket_id=? AND sink=?", (ticket_id, sink)
    ) as cur:
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def set_provider_id(
    conn: aiosqlite.Connection, ticket_id: int, sink: str, pid: str, now: float
) -> None:
    """Remember the id a sink gave this ticket, so updates reach the same ticket."""
    await conn.execute(
        "INSERT INTO ticket_sinks (ticket_id, sink, provider_id, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (ticket_id, sink) DO UPDATE SET provider_id=excluded.provider_id, "
        "updated_at=excluded.updated_at",
        (ticket_id, sink, pid, now),
    )
