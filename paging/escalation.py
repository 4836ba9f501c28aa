"""Escalation engine: persisted per-incident step state, due steps, rate caps and bundling.

All functions take the caller's connection and run inside its transaction, so an
escalation step, its queue rows and its outbox rows commit together or not at all.
Deadlines (`next_fire_at`) are epoch seconds in the table: the next step fires at exactly
previous deadline + wait, whatever the wall clock did or however long nocd was down, and
at most one step per incident fires per `fire_due` call (nothing is skipped or doubled).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiosqlite
import structlog

from nocd.clock import iso
from nocd.incidents.model import Incident, IncidentState, load
from nocd.incidents.timeline import add_event
from nocd.outbox import enqueue
from paging.config import Channel, EscalationPolicy, PagingConfig
from paging.messages import sms_text, voice_text
from paging.schedules import IcalShifts, on_call

log = structlog.get_logger(__name__)

MAX_BUNDLE = 1000  # incidents linked to one bundled page (one keypress acks them all)
CALL_IN_FLIGHT = 600.0  # a call not finished after this long no longer holds new calls back
CALL_ACTIVE = ("queued", "initiated", "ringing", "in-progress")  # queued: not yet sent


@dataclass(frozen=True, slots=True)
class Target:
    """One person to reach on one channel."""

    person: str
    channel: Channel


def step_targets(
    paging: PagingConfig,
    policy: EscalationPolicy,
    step: int,
    at: float,
    ical: Mapping[str, IcalShifts],
) -> tuple[list[Target], list[str]]:
    """Who a step (or the fallback, step == len(steps)) reaches at `at`, and any warnings."""
    warnings: list[str] = []
    if step < len(policy.steps):
        s = policy.steps[step]
        people, channels = list(s.people), s.channels
        t = datetime.fromtimestamp(at, UTC)
        for name in s.schedules:
            who = on_call(paging.schedules[name], t, ical.get(name))
            if who is None:
                warnings.append(f"nobody is on call in schedule {name}")
            else:
                people.append(who)
    else:
        assert policy.fallback is not None
        people, channels = list(policy.fallback.people), policy.fallback.channels
    out: list[Target] = []
    for p in dict.fromkeys(people):
        for ch in channels:
            if paging.people[p].number(ch) is None:
                warnings.append(f"{p} has no number for {ch}")
            else:
                out.append(Target(p, ch))
    return out, warnings


async def start(conn: aiosqlite.Connection, incident_id: int, policy: str, now: float) -> bool:
    """Start escalating an incident (first step due now); False if it already was."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO paging_escalations (incident_id, policy, step, repeat, "
        "next_fire_at, state, started_at, updated_at) VALUES (?, ?, 0, 0, ?, 'active', ?, ?)",
        (incident_id, policy, now, now, now),
    )
    return cur.rowcount == 1


async def stop(conn: aiosqlite.Connection, incident_id: int, now: float, reason: str) -> bool:
    """Stop an active escalation and drop its queued notifications; False if none was active."""
    cur = await conn.execute(
        "UPDATE paging_escalations SET state='stopped', stop_reason=?, updated_at=? "
        "WHERE incident_id=? AND state='active'",
        (reason, now, incident_id),
    )
    await conn.execute("DELETE FROM paging_queue WHERE incident_id=?", (incident_id,))
    return cur.rowcount == 1


async def fire_due(
    conn: aiosqlite.Connection, paging: PagingConfig, now: float, ical: Mapping[str, IcalShifts]
) -> int:
    """Fire every escalation step due at `now` into the per-recipient queue; returns steps."""
    async with conn.execute(
        "SELECT incident_id, policy, step, repeat, next_fire_at FROM paging_escalations "
        "WHERE state='active' AND next_fire_at <= ? ORDER BY next_fire_at, incident_id LIMIT 200",
        (now,),
    ) as cur:
        rows = list(await cur.fetchall())
    fired = 0
    for inc_id, pname, step, repeat, due in rows:
        inc = await load(conn, inc_id)
        if inc is None or inc.state is not IncidentState.TRIGGERED:
            state = inc.state.value if inc else "gone"
            await stop(conn, inc_id, now, f"incident is {state}")
            continue
        policy = paging.escalation_policies.get(pname)
        if policy is None:
            await stop(conn, inc_id, now, f"policy {pname} no longer configured")
            await add_event(
                conn,
                inc_id,
                now,
                "page",
                f"ESCALATION STOPPED: policy {pname} is no longer configured",
                {"error": True},
            )
            log.error("escalation policy missing", incident=inc.code, policy=pname)
            continue
        n = len(policy.steps)
        if step >= n and repeat < policy.repeat:
            step, repeat = 0, repeat + 1
        if step > n or (step == n and policy.fallback is None):
            await conn.execute(
                "UPDATE paging_escalations SET state='exhausted', updated_at=? WHERE incident_id=?",
                (now, inc_id),
            )
            await add_event(
                conn,
                inc_id,
                now,
                "page",
                "escalation exhausted: nobody acknowledged",
                {"policy": pname},
            )
            log.error("escalation exhausted", incident=inc.code, policy=pname)
            continue
        targets, warnings = step_targets(paging, policy, step, now, ical)
        for t in targets:
            await conn.execute(
                "INSERT OR IGNORE INTO paging_queue (incident_id, step, repeat, person, channel, "
                "queued_at) VALUES (?, ?, ?, ?, ?, ?)",
                (inc_id, step, repeat, t.person, t.channel, now),
            )
        if step < n:
            wait = policy.steps[step].wait if targets else 0.0  # nobody to wait for: move on
            label = f"step {step + 1}/{n}, pass {repeat + 1}/{policy.repeat + 1}"
        else:
            wait, label = 0.0, "fallback contact"
        nxt = due + wait
        who = ", ".join(f"{t.person} by {t.channel}" for t in targets) or "nobody"
        text = f"escalation {label}: paging {who}"
        text += f"; next step at {iso(nxt)} unless acknowledged" if step < n else ""
        if warnings:
            text += " (" + "; ".join(warnings) + ")"
        await add_event(
            conn,
            inc_id,
            now,
            "page",
            text,
            {
                "policy": pname,
                "step": step,
                "repeat": repeat,
                "targets": [[t.person, t.channel] for t in targets],
            },
        )
        new_state = "active" if step < n else "exhausted"
        await conn.execute(
            "UPDATE paging_escalations SET step=?, repeat=?, next_fire_at=?, state=?, "
            "updated_at=? WHERE incident_id=?",
            (step + 1, repeat, nxt, new_state, now, inc_id),
        )
        fired += 1
    return fired


def page_key(incident_ids: list[tuple[int, int, int]], person: str, channel: str) -> str:
    """Deterministic outbox key per (incident, step, repeat, person, channel) or bundle."""
    if len(incident_ids) == 1:
        i, s, r = incident_ids[0]
        return f"page.{i}.{s}.{r}.{person}.{channel}"
    digest = hashlib.sha256(json.dumps(sorted(incident_ids)).encode()).hexdigest()[:12]
    return f"page.b{min(i for i, _, _ in incident_ids)}.{digest}.{person}.{channel}"


async def record_page(
    conn: aiosqlite.Connection,
    key: str,
    person: str | None,
    channel: Channel,
    number: str,
    incidents: list[Incident],
    now: float,
    step: int | None = None,
    repeat: int | None = None,
    redials: int = 0,
) -> bool:
    """Write the page row, its incident links and its outbox row; False if the key existed."""
    text = voice_text(incidents) if channel == "voice" else sms_text(incidents)
    ids = [i.id for i in incidents]
    payload = {"key": key, "channel": channel, "to": number, "person": person, "incidents": ids}
    if not await enqueue(conn, key, "notify", payload, now, incident_id=ids[0]):
        return False
    await conn.execute(
        "INSERT OR IGNORE INTO paging_pages (key, person, channel, number, text, step, repeat, "
        "created_at, updated_at, redials) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key, person, channel, number, text, step, repeat, now, now, redials),
    )
    await conn.executemany(
        "INSERT OR IGNORE INTO paging_page_incidents (key, incident_id) VALUES (?, ?)",
        [(key, i) for i in ids],
    )
    return True


async def _hold_reason(
    conn: aiosqlite.Connection, paging: PagingConfig, person: str, channel: str, now: float
) -> str | None:
    """Why a page to this person on this channel must wait (and be bundled), or None."""
    limits = paging.rate_limits
    cap = limits.voice if channel == "voice" else limits.sms
    # Pages dated after `now` were sent before the wall clock stepped back: how long ago is
    # unknowable, and counting them would hold this page until the clock caught up (an hour
    # after a -1 h step), so the spacing and the cap look only at pages dated up to now.
    async with conn.execute(
        "SELECT MAX(created_at) FROM paging_pages WHERE person=? AND channel=? AND created_at <= ?",
        (person, channel, now),
    ) as cur:
        row = await cur.fetchone()
    last = float(row[0]) if row and row[0] is not None else None
    if last is not None and now - last < limits.bundle_window:
        return f"paged {int(now - last)}s ago (bundle window {int(limits.bundle_window)}s)"
    async with conn.execute(
        "SELECT COUNT(*) FROM paging_pages WHERE person=? AND channel=? AND created_at > ? "
        "AND created_at <= ?",
        (person, channel, now - limits.window, now),
    ) as cur:
        row = await cur.fetchone()
    if row is not None and int(row[0]) >= cap:
        return f"rate cap reached ({cap} per {int(limits.window // 60)}m)"
    if channel == "voice":
        # A second call while the first still rings would find the line busy, and a busy
        # status moves the escalation on: wait for the call in progress to end.
        async with conn.execute(
            "SELECT 1 FROM paging_pages WHERE person=? AND channel='voice' AND created_at > ? "
            f"AND status IN ({','.join('?' * len(CALL_ACTIVE))})",
            (person, now - CALL_IN_FLIGHT, *CALL_ACTIVE),
        ) as cur:
            if await cur.fetchone() is not None:
                return "a call to them is still in progress"
    return None


async def flush_queue(conn: aiosqlite.Connection, paging: PagingConfig, now: float) -> int:
    """Turn queued notifications into pages within each recipient's rate cap; returns pages."""
    async with conn.execute(
        "SELECT DISTINCT person, channel FROM paging_queue ORDER BY person, channel"
    ) as cur:
        groups = list(await cur.fetchall())
    made = 0
    for person, channel in groups:
        if person not in paging.people:  # removed by a reload: nobody to reach
            await conn.execute(
                "DELETE FROM paging_queue WHERE person=? AND channel=?", (person, channel)
            )
            continue
        why = await _hold_reason(conn, paging, person, channel, now)
        if why is not None:
            # Cheap while held: only rows not yet told about the hold are read.
            async with conn.execute(
                "SELECT incident_id FROM paging_queue WHERE person=? AND channel=? "
                "AND held_noted=0",
                (person, channel),
            ) as cur:
                fresh = [int(r[0]) for r in await cur.fetchall()]
            text = f"{channel} to {person} held for the next bundle: {why}"
            for inc_id in fresh:
                await add_event(
                    conn, inc_id, now, "page", text, {"person": person, "channel": channel}
                )
            if fresh:
                await conn.execute(
                    "UPDATE paging_queue SET held_noted=1 WHERE person=? AND channel=?",
                    (person, channel),
                )
            continue
        async with conn.execute(
            "SELECT q.incident_id, q.step, q.repeat, q.held_noted, i.state FROM paging_queue q "
            "JOIN incidents i ON i.id = q.incident_id WHERE q.person=? AND q.channel=? "
            "ORDER BY q.queued_at, q.incident_id",
            (person, channel),
        ) as cur:
            rows = list(await cur.fetchall())
        # Acks and resolves delete their queue rows; this catches any other way out.
        dead = [(r[0],) for r in rows if r[4] != IncidentState.TRIGGERED.value]
        live = [r for r in rows if r[4] == IncidentState.TRIGGERED.value]
        await conn.executemany(
            "DELETE FROM paging_queue WHERE incident_id=? AND person=? AND channel=?",
            [(d[0], person, channel) for d in dead],
        )
        if not live:
            continue
        batch = live[:MAX_BUNDLE]
        incidents = [i for i in [await load(conn, r[0]) for r in batch] if i is not None]
        if not incidents:
            continue
        number = paging.people[person].number(channel)
        assert number is not None  # step_targets only queues reachable channels
        triples = [(r[0], r[1], r[2]) for r in batch]
        key = page_key(triples, person, channel)
        single = len(batch) == 1
        await record_page(
            conn,
            key,
            person,
            channel,
            number,
            incidents,
            now,
            batch[0][1] if single else None,
            batch[0][2] if single else None,
        )
        for inc in incidents:
            bundle = "" if single else f" (bundled with {len(incidents) - 1} other incidents)"
            await add_event(
                conn,
                inc.id,
                now,
                "page",
                f"page queued: {channel} to {person} ({number}){bundle}",
                {"key": key, "person": person, "channel": channel},
            )
        await conn.executemany(
            "DELETE FROM paging_queue WHERE incident_id=? AND step=? AND repeat=? AND person=? "
            "AND channel=?",
            [(*t, person, channel) for t in triples],
        )
        made += 1
    return made
