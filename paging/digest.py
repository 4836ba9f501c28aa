"""The morning digest: degraded incidents raised after hours, sent when support hours open.

`hold` records an incident for the digest due at `due_at`; `release_due` (inside the
caller's transaction) drops the ones resolved by then and enqueues one `digest` outbox row
per recipient and due time, with a deterministic key, so a restart never sends it twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import aiosqlite

from nocd.clock import iso
from nocd.incidents.model import Incident, IncidentState, load
from nocd.incidents.timeline import add_event
from nocd.outbox import enqueue
from paging.config import PagingConfig
from paging.messages import digest_text


async def hold(
    conn: aiosqlite.Connection,
    incident_id: int,
    route: str,
    due_at: float,
    recipients: tuple[str, ...],
    now: float,
) -> bool:
    """Hold an incident for the digest at `due_at`; False if it already was."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO paging_digest (incident_id, route, due_at, recipients, state, "
        "held_at) VALUES (?, ?, ?, ?, 'held', ?)",
        (incident_id, route, due_at, json.dumps(list(recipients)), now),
    )
    return cur.rowcount == 1


async def drop(conn: aiosqlite.Connection, incident_id: int, now: float) -> bool:
    """Take a resolved incident out of the pending digest; False if it was not held."""
    cur = await conn.execute(
        "UPDATE paging_digest SET state='dropped', done_at=? WHERE incident_id=? AND state='held'",
        (now, incident_id),
    )
    return cur.rowcount == 1


async def release_due(conn: aiosqlite.Connection, paging: PagingConfig, now: float) -> int:
    """Enqueue the digests due at `now`; returns how many outbox rows were written."""
    async with conn.execute(
        "SELECT incident_id, due_at, recipients FROM paging_digest "
        "WHERE state='held' AND due_at <= ? ORDER BY due_at, incident_id",
        (now,),
    ) as cur:
        rows = list(await cur.fetchall())
    buckets: dict[tuple[str, int], list[Incident]] = defaultdict(list)
    mailed: dict[int, list[Incident]] = defaultdict(list)
    for inc_id, due_at, recipients in rows:
        inc = await load(conn, inc_id)
        if inc is None or inc.state is IncidentState.RESOLVED:
            await drop(conn, inc_id, now)
            if inc is not None:
                await add_event(conn, inc_id, now, "digest", "resolved before the digest: dropped")
            continue
        people = [p for p in json.loads(recipients) if p in paging.people]
        if paging.digest_email is not None:
            mailed[int(due_at)].append(inc)
        if not people and paging.digest_email is None:
            await drop(conn, inc_id, now)
            await add_event(
                conn,
                inc_id,
                now,
                "digest",
                "NOT IN ANY DIGEST: no digest_to recipients configured for its route",
                {"error": True},
            )
            continue
        for p in people:
            buckets[(p, int(due_at))].append(inc)
        await conn.execute(
            "UPDATE paging_digest SET state='sent', done_at=? WHERE incident_id=?",
            (now, inc_id),
        )
        await add_event(
            conn,
            inc_id,
            now,
            "digest",
            f"included in the digest due {iso(due_at)} to {', '.join(people)}",
            {"recipients": people},
        )
    written = 0
    for (person, due), incidents in buckets.items():
        number = paging.people[person].number("sms")
        if number is None:
            continue
        payload = {
            "person": person,
            "to": number,
            "incidents": [i.id for i in incidents],
            "text": digest_text(incidents, iso(due)),
        }
        ids = ",".join(str(i.id) for i in incidents)
        key = f"digest.{person}.{due}.{hashlib.sha256(ids.encode()).hexdigest()[:10]}"
        if await enqueue(conn, key, "digest", payload, now):
            written += 1
    for due, incidents in mailed.items():
        ids = ",".join(str(i.id) for i in incidents)
        key = f"digest.email.{due}.{hashlib.sha256(ids.encode()).hexdigest()[:10]}"
        payload = {
            "channel": "email",
            "incidents": [i.id for i in incidents],
            "subject": f"nocd digest {iso(due)}: {len(incidents)} degraded incident(s)",
            "text": digest_text(incidents, iso(due), limit=None),
        }
        if await enqueue(conn, key, "digest", payload, now):
            written += 1
    return written
