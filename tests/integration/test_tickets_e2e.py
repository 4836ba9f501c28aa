"""End to end at the tickets level: one failure → one ticket in the store, by mail (aiosmtpd),
webhook (signature verified) and Jira (fake); updates land on the same tickets; a restart in
between doubles nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nocd.incidents.model import IncidentEvent, IncidentEventKind
from nocd.model import Severity
from nocd.tickets import store as tickets_db
from tests.integration.tickets_world import T0, World, drain, insert_incident, write_secret_env


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    write_secret_env(monkeypatch, tmp_path)
    w = World(tmp_path)
    await w.start()
    yield w
    await w.stop()


async def test_one_ticket_everywhere_updated_in_place_across_a_restart(world: World) -> None:
    async with world.store.transaction() as conn:
        incident = await insert_incident(conn, severity=Severity.DEGRADED)
        await world.tickets.on_incident(
            conn, incident, IncidentEvent(IncidentEventKind.OPENED, T0, text=incident.title)
        )
    await drain(world.worker, world.clock)

    # Restart between the open and the severity change; the open is replayed.
    await world.store.close()
    await world.boot()
    async with world.store.transaction() as conn:
        from nocd.incidents.model import load

        again = await load(conn, incident.id)
        assert again is not None
        await world.tickets.on_incident(conn, again, IncidentEvent(IncidentEventKind.OPENED, T0))
    await drain(world.worker, world.clock)

    world.clock.advance(300)
    await world.event(
        IncidentEventKind.SEVERITY, incident.id, severity="critical", previous=Severity.DEGRADED
    )
    await drain(world.worker, world.clock)
    world.clock.advance(1800)
    await world.event(
        IncidentEventKind.RESOLVED,
        incident.id,
        state="resolved",
        resolved_at=world.clock.now(),
        resolved_by="nocd",
    )
    await drain(world.worker, world.clock)

    # The built-in store: one ticket, now P1 (the worst reached), resolved, RFO owed in 24 h.
    ticket = await tickets_db.by_incident(world.store.reader, incident.id)
    assert ticket is not None
    async with world.store.reader.execute("SELECT COUNT(*) FROM tickets") as cur:
        assert tuple(await cur.fetchone() or ()) == (1,)
    assert (ticket.priority, ticket.worst_priority, ticket.status) == ("P1", "P1", "resolved")
    assert ticket.rfo_due == pytest.approx(T0 + 2100 + 86400)
    assert ticket.facts["serial"] == "SN-0001" and ticket.facts["partner"] == "Example Partner Ltd"
    kinds = [c.kind for c in await tickets_db.comments(world.store.reader, ticket.id)]
    assert kinds == ["opened", "severity", "resolved"]

    # Email: one thread of three mails.
    msgs = world.mail.messages
    assert len(msgs) == 3
    root = msgs[0]["Message-ID"]
    assert root == f"<{ticket.fingerprint}.nocd@example.com>"
    assert [m["In-Reply-To"] for m in msgs[1:]] == [root, root]
    assert [m["References"] for m in msgs[1:]] == [root, root]
    assert len({m["Message-ID"] for m in msgs}) == 3
    assert "[P2]" in msgs[0]["Subject"] and msgs[2]["Subject"].startswith("Re: ")
    assert "Serial: SN-0001" in msgs[0].get_payload()

    # Webhook: three signed deliveries, no forgeries, create → update → resolve.
    assert world.hook.forged == 0
    assert [r.event for r in world.hook.accepted] == ["create", "update", "resolve"]
    assert {r.body["ticket"]["fingerprint"] for r in world.hook.accepted} == {ticket.fingerprint}

    # Jira: one issue, two comments, transitioned to Done; the search found nothing twice.
    assert list(world.jira.issues) == ["NOC-1"]
    issue = world.jira.issues["NOC-1"]
    assert issue.status == "Done"
    assert len(issue.comments) == 2
    assert ticket.fingerprint in issue.fields["labels"]
    assert issue.fields["priority"] == {"name": "High"}  # P2 when it opened

    # Each sink's id for the ticket is stored, so updates went to the same place.
    assert await tickets_db.provider_id(world.store.reader, ticket.id, "jira") == "NOC-1"
    assert await tickets_db.provider_id(world.store.reader, ticket.id, "mail") == root
