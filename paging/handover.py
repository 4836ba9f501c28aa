"""Memory-to-store handover: a memory escalation's pages and position become the incident's.

`adopt` runs inside the transaction that opens the incident (the pager's listener), so the
stored escalation starts where the memory one stands — the steps already sent are not sent
again and the next step keeps its deadline — and the pages sent from memory are on the
incident's timeline and count towards each person's rate caps and bundle window.
`carry_over` does the same for an escalation that was already stored and whose steps came
due while the store refused writes; it runs before any `fire_due`, in the same transaction.
"""

from __future__ import annotations

import aiosqlite

from nocd.clock import iso
from nocd.incidents.model import Incident
from nocd.incidents.timeline import add_event
from nocd.store import Store
from paging.memory import MemOutage


async def adopt(conn: aiosqlite.Connection, store: Store, mem: MemOutage, inc: Incident) -> None:
    """Write `mem`'s escalation and pages for incident `inc`; mark it adopted."""
    now = inc.opened_at
    state = "exhausted" if mem.state == "exhausted" else "active"
    if mem.state in ("stopped",):
        state = "stopped"
    await conn.execute(
        "INSERT OR IGNORE INTO paging_escalations (incident_id, policy, step, repeat, "
        "next_fire_at, state, started_at, updated_at, stop_reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            inc.id,
            mem.policy,
            mem.step,
            mem.repeat,
            mem.next_fire_at,
            state,
            mem.started_at,
            now,
            None if state != "stopped" else "policy missing while paging from memory",
        ),
    )
    await add_event(
        conn,
        inc.id,
        mem.started_at,
        "page",
        f"paged from memory while the state database refused writes: {mem.reason}",
        {"policy": mem.policy, "from_memory": True},
    )
    await _write_pages(conn, mem, inc.id, now)
    nxt = f"; next step at {iso(mem.next_fire_at)}" if state == "active" else ""
    await add_event(
        conn,
        inc.id,
        now,
        "page",
        f"escalation handed over from memory at step {mem.step}, pass {mem.repeat + 1}{nxt}",
        {"policy": mem.policy, "step": mem.step, "repeat": mem.repeat, "from_memory": True},
    )
    _mark(store, mem)


def _mark(store: Store, mem: MemOutage) -> None:
    mem.adopted = True

    def undo() -> None:
        mem.adopted = False

    def done() -> None:
        mem.recorded = True

    store.on_rollback(undo)
    store.on_commit(done)


async def carry_over(conn: aiosqlite.Connection, store: Store, mem: MemOutage, now: float) -> None:
    """Move a stored escalation to where its memory continuation stands; mark it adopted."""
    assert mem.stored_id is not None and mem.stored_from is not None
    # Acknowledged in memory: stopped now; the daemon applies the ack itself right after.
    state = {"exhausted": "exhausted", "stopped": "stopped", "acked": "stopped"}.get(
        mem.state, "active"
    )
    cur = await conn.execute(
        "UPDATE paging_escalations SET step=?, repeat=?, next_fire_at=?, state=?, "
        "updated_at=? WHERE incident_id=? AND step=? AND repeat=? AND state='active'",
        (mem.step, mem.repeat, mem.next_fire_at, state, now, mem.stored_id, *mem.stored_from),
    )
    if cur.rowcount:  # else the stored escalation moved on meanwhile: keep only the record
        await add_event(
            conn,
            mem.stored_id,
            now,
            "page",
            f"steps due while the state database refused writes were sent from memory; "
            f"escalation continues at step {mem.step}, pass {mem.repeat + 1}",
            {"policy": mem.policy, "step": mem.step, "from_memory": True},
        )
    await _write_pages(conn, mem, mem.stored_id, now)
    _mark(store, mem)


async def _write_pages(conn: aiosqlite.Connection, mem: MemOutage, inc_id: int, now: float) -> None:
    """The memory pages as stored pages of incident `inc_id`, with their timeline events."""
    for p in mem.pages:
        status = "failed" if p.status == "failed" else "sent"
        await conn.execute(
            "INSERT OR IGNORE INTO paging_pages (key, person, channel, number, text, step, "
            "repeat, created_at, first_attempt_at, provider_id, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.key,
                p.person,
                p.channel,
                p.number,
                p.text,
                p.step,
                p.repeat,
                p.at,
                p.first_attempt_at,
                p.sid,
                status,
                now,
            ),
        )
        await conn.execute(
            "INSERT OR IGNORE INTO paging_page_incidents (key, incident_id) VALUES (?, ?)",
            (p.key, inc_id),
        )
        verb = "call" if p.channel == "voice" else "SMS"
        outcome = {"sent": f"sent: {p.sid}", "failed": "failed"}.get(
            p.status, "being sent (provider id not yet known)"
        )
        await add_event(
            conn,
            inc_id,
            p.at,
            "delivery",
            f"{verb} to {p.person} ({p.number}) from memory {outcome}",
            {"key": p.key, "status": status, "provider_id": p.sid, "from_memory": True},
        )
