"""Sink outages (SMTP down, webhook 5xx, Jira 429) delay ticket ops, never lose or double them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nocd.incidents.model import IncidentEvent, IncidentEventKind
from nocd.model import Severity
from tests.integration.tickets_world import T0, World, drain, insert_incident, write_secret_env

SECRETS = ("hook-key-5f0c", "jira-token-91ab")


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    write_secret_env(monkeypatch, tmp_path)
    w = World(tmp_path)
    await w.start(mail_up=False)
    yield w
    await w.stop()


async def outbox(world: World) -> dict[str, tuple[str, int, str | None, float]]:
    """key → (state, attempts, last_error, not_before)."""
    async with world.store.reader.execute(
        "SELECT key, state, attempts, last_error, not_before FROM outbox"
    ) as cur:
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in await cur.fetchall()}


async def open_and_resolve(world: World) -> int:
    async with world.store.transaction() as conn:
        incident = await insert_incident(conn, severity=Severity.CRITICAL)
        await world.tickets.on_incident(conn, incident, IncidentEvent(IncidentEventKind.OPENED, T0))
    world.clock.advance(60)
    await world.event(
        IncidentEventKind.RESOLVED, incident.id, state="resolved", resolved_at=world.clock.now()
    )
    return incident.id


async def test_outages_delay_but_never_lose_or_double(world: World) -> None:
    world.hook.fail_next = [(500, None), (503, None), (500, None)]
    world.jira.fail_next = [(429, "7")]
    inc = await open_and_resolve(world)

    # First pass: mail refused (server down), webhook 500, Jira 429 with Retry-After: 7.
    await world.worker.run_once()
    rows = await outbox(world)
    mail1 = rows[f"ticket:{inc}:mail:1"]
    assert mail1[0] == "pending" and "SMTP 127.0.0.1" in (mail1[2] or "")
    assert "HTTP 500" in (rows[f"ticket:{inc}:hook:1"][2] or "")
    jira1 = rows[f"ticket:{inc}:jira:1"]
    assert "HTTP 429" in (jira1[2] or "") and jira1[3] == pytest.approx(world.clock.now() + 7)
    # The resolve waits for the create of the same ticket at the same sink.
    assert "waiting for an earlier op" in (rows[f"ticket:{inc}:jira:2"][2] or "")

    # Hours of SMTP outage: ops stay pending, nothing is dropped.
    for _ in range(10):
        world.clock.advance(400)
        await world.worker.run_once()
    rows = await outbox(world)
    assert rows[f"ticket:{inc}:mail:1"][0] == "pending"
    assert rows[f"ticket:{inc}:mail:1"][1] >= 5
    assert all(rows[f"ticket:{inc}:{s}:{n}"][0] == "done" for s in ("hook", "jira") for n in (1, 2))

    # The mail server comes back on its port: the thread arrives complete and in order.
    await world.mail.start(world.smtp_port)
    world.clock.advance(400)
    await drain(world.worker, world.clock, step=300)
    assert [m["X-Nocd-Action"] for m in world.mail.messages] == ["create", "resolve"]
    assert world.mail.messages[1]["In-Reply-To"] == world.mail.messages[0]["Message-ID"]
    assert [r.event for r in world.hook.accepted] == ["create", "resolve"]
    assert world.hook.duplicates == 0 and world.hook.forged == 0
    assert len(world.jira.issues) == 1 and world.jira.issues["NOC-1"].status == "Done"
    assert world.worker.failed == 0

    # Secrets never reach stored rows (errors, payloads, timeline, tickets).
    dump = "\n".join(world_dump(world))
    for secret in SECRETS:
        assert secret not in dump


def world_dump(world: World) -> list[str]:
    import sqlite3

    with sqlite3.connect(world.path) as db:
        return list(db.iterdump())


async def test_a_refused_op_is_final_and_does_not_block_the_next(world: World) -> None:
    await world.mail.start(world.smtp_port)
    world.hook.fail_next = [(400, None)]  # the receiver rejects the create for good
    inc = await open_and_resolve(world)
    await drain(world.worker, world.clock)
    rows = await outbox(world)
    assert rows[f"ticket:{inc}:hook:1"][0] == "failed"
    assert rows[f"ticket:{inc}:hook:2"][0] == "done"
    assert [r.event for r in world.hook.accepted] == ["resolve"]
    assert world.worker.failed == 1


async def test_crash_mid_delivery_is_reconciled_not_doubled(world: World) -> None:
    """A crash after Jira created the issue but before the key was recorded: no second issue."""
    await world.mail.start(world.smtp_port)
    async with world.store.transaction() as conn:
        incident = await insert_incident(conn)
        await world.tickets.on_incident(conn, incident, IncidentEvent(IncidentEventKind.OPENED, T0))
    await drain(world.worker, world.clock)
    # Simulate the crash: the key was never stored and the row is back to 'sending'.
    async with world.store.transaction() as conn:
        await conn.execute("DELETE FROM ticket_sinks")
        await conn.execute("UPDATE outbox SET state='sending'")
    await world.store.close()
    await world.boot()  # recover(): 'sending' rows are in doubt and go back to pending
    await drain(world.worker, world.clock)
    assert len(world.jira.issues) == 1  # found by its fingerprint label, not created again
    assert world.hook.duplicates == 1  # resent with the same idempotency key; receiver dropped it
    assert len(world.hook.accepted) == 1
    # The resend carries the same Message-ID, so the help desk sees a duplicate of one mail.
    assert len({m["Message-ID"] for m in world.mail.messages}) == 1
    world.clock.advance(60)
    await world.event(IncidentEventKind.ACKNOWLEDGED, incident.id, state="acknowledged")
    await drain(world.worker, world.clock)
    assert len(world.jira.issues["NOC-1"].comments) == 1
