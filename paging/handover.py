"""Memory-to-store handover: a memory escalation's pages and position become the incident's.

Runs inside the transaction that opens the incident (the pager's listener), so the stored
escalation starts where the memory one stands — the steps already sent are not sent again
and the next step keeps its deadline — and the pages sent from memory are on the incident's
timeline and count towards each person's rate caps and bundle window.
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
            (p.key, inc.id),
        )
        verb = "call" if p.channel == "voice" else "SMS"
        outcome = {"sent": f"sent: {p.sid}", "failed": "failed"}.get(
            p.status, "being sent (provider id not yet known)"
        )
        await add_event(
            conn,
            inc.id,
            p.at,
            "delivery",
            f"{verb} to {p.person} ({p.number}) from memory {outcome}",
            {"key": p.key, "status": status, "provider_id": p.sid, "from_memory": True},
        )
    nxt = f"; next step at {iso(mem.next_fire_at)}" if state == "active" else ""
    await add_event(
        conn,
        inc.id,
        now,
        "page",
        f"escalation handed over from memory at step {mem.step}, pass {mem.repeat + 1}{nxt}",
        {"policy": mem.policy, "step": mem.step, "repeat": mem.repeat, "from_memory": True},
    )
    mem.adopted = True

    def undo() -> None:
        mem.adopted = False

    def done() -> None:
        mem.recorded = True

    store.on_rollback(undo)
    store.on_commit(done)
