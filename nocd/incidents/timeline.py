"""The incident timeline: every event appended in the store, read back in order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One event of an incident's life."""

    id: int
    incident_id: int
    at: float
    kind: str
    text: str
    data: dict[str, Any]


async def add_event(
    conn: aiosqlite.Connection,
    incident_id: int,
    at: float,
    kind: str,
    text: str,
    data: dict[str, Any] | None = None,
) -> int:
    """Append an event (inside the caller's transaction); returns its id."""
    cur = await conn.execute(
        "INSERT INTO timeline (incident_id, at, kind, text, data) VALUES (?, ?, ?, ?, ?)",
        (incident_id, at, kind, text, json.dumps(data or {}, sort_keys=True)),
    )
    return int(cur.lastrowid or 0)


async def events(conn: aiosqlite.Connection, incident_id: int) -> list[TimelineEvent]:
    """All events of an incident, oldest first."""
    async with conn.execute(
        "SELECT id, incident_id, at, kind, text, data FROM timeline "
        "WHERE incident_id=? ORDER BY at, id",
        (incident_id,),
    ) as cur:
        rows = await cur.fetchall()
    return [TimelineEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]
