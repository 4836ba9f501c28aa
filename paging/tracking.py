"""Delivery tracking: stored pages, status callbacks' consequences (redial, fallback, move on).

Functions run inside the caller's transaction. Keys derive from the original page's key:
`….r1` a redial, `….fb` the channel fallback (at most one per page, never chained).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiosqlite

from nocd.incidents.model import Incident, IncidentState, load
from nocd.incidents.timeline import add_event
from paging import escalation
from paging.config import Channel, PagingConfig

CALL_FAILED = frozenset({"no-answer", "busy", "failed", "canceled"})
SMS_FAILED = frozenset({"failed", "undelivered"})
FINAL = CALL_FAILED | SMS_FAILED | {"completed", "delivered", "cancelled"}


_REDIAL = re.compile(r"\.r\d+$")


def base_key(key: str) -> str:
    """The page key without a redial suffix (`….voice.r2` → `….voice`)."""
    return _REDIAL.sub("", key)


@dataclass(frozen=True, slots=True)
class PageRecord:
    """A page as stored: who, how, what was said, and its incidents."""

    key: str
    person: str | None
    channel: Channel
    number: str
    text: str
    step: int | None
    repeat: int | None
    status: str
    provider_id: str | None
    first_attempt_at: float | None
    redials: int
    incident_ids: tuple[int, ...]


async def load_page(conn: aiosqlite.Connection, key: str) -> PageRecord | None:
    """The stored page with this key, with its incident ids."""
    async with conn.execute(
        "SELECT key, person, channel, number, text, step, repeat, status, provider_id, "
        "first_attempt_at, redials FROM paging_pages WHERE key=?",
        (key,),
    ) as cur:
        r = await cur.fetchone()
    if r is None:
        return None
    async with conn.execute(
        "SELECT incident_id FROM paging_page_incidents WHERE key=? ORDER BY incident_id",
        (key,),
    ) as cur:
        ids = tuple(int(x[0]) for x in await cur.fetchall())
    return PageRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], ids)


async def _live(conn: aiosqlite.Connection, rec: PageRecord) -> list[Incident]:
    found = [i for i in [await load(conn, x) for x in rec.incident_ids] if i is not None]
    return [i for i in found if i.state is IncidentState.TRIGGERED]


async def fallback(
    conn: aiosqlite.Connection, paging: PagingConfig, rec: PageRecord, now: float
) -> bool:
    """Channel fallback: a failed call becomes an SMS and the reverse (once per page)."""
    if not paging.channel_fallback or rec.person not in paging.people or ".fb" in rec.key:
        return False
    other: Channel = "sms" if rec.channel == "voice" else "voice"
    number = paging.people[rec.person].number(other)
    incidents = await _live(conn, rec)
    if number is None or not incidents:
        return False
    if rec.step is not None:
        # The step already reached this person on the other channel: nothing to add.
        async with conn.execute(
            "SELECT 1 FROM paging_pages p JOIN paging_page_incidents x ON x.key = p.key "
            "WHERE p.person=? AND p.channel=? AND p.step=? AND p.repeat=? AND x.incident_id=? "
            "AND p.status NOT IN ('failed', 'undelivered', 'cancelled')",
            (rec.person, other, rec.step, rec.repeat, incidents[0].id),
        ) as cur:
            if await cur.fetchone() is not None:
                return False
    key = f"{base_key(rec.key)}.fb"
    if not await escalation.record_page(
        conn, key, rec.person, other, number, incidents, now, rec.step, rec.repeat
    ):
        return False
    for i in incidents:
        text = f"channel fallback: {other} to {rec.person} ({number})"
        await add_event(conn, i.id, now, "page", text, {"key": key})
    return True


async def call_failed(
    conn: aiosqlite.Connection, paging: PagingConfig, rec: PageRecord, now: float
) -> None:
    """A call ended no-answer/busy/failed: redial, else fall back and move on now."""
    live = await _live(conn, rec)
    if not live:
        return
    if rec.redials < paging.redial and rec.person is not None:
        key = f"{base_key(rec.key)}.r{rec.redials + 1}"
        if await escalation.record_page(
            conn,
            key,
            rec.person,
            "voice",
            rec.number,
            live,
            now,
            rec.step,
            rec.repeat,
            rec.redials + 1,
        ):
            for i in live:
                text = f"redial {rec.redials + 1}/{paging.redial} of {rec.person}"
                await add_event(conn, i.id, now, "page", text, {"key": key})
        return
    await fallback(conn, paging, rec, now)
    if rec.step is None:
        return
    for i in live:
        # Only when this page belongs to the step now waiting: a late callback from an
        # earlier step must not skip the current one.
        cur = await conn.execute(
            "UPDATE paging_escalations SET next_fire_at=?, updated_at=? WHERE incident_id=? "
            "AND state='active' AND step=? AND repeat=? AND next_fire_at > ?",
            (now, now, i.id, rec.step + 1, rec.repeat, now),
        )
        if cur.rowcount:
            text = "call not answered: moving on to the next step now"
            await add_event(conn, i.id, now, "page", text)
