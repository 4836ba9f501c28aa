"""RFO: rendered from a scripted incident's timeline (golden files), escaping, due tracking."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nocd.clock import FakeClock
from nocd.config import Config
from nocd.configload import load_text
from nocd.incidents.model import Incident, IncidentEvent, IncidentEventKind, load
from nocd.incidents.timeline import add_event, events
from nocd.store import Store
from nocd.tickets import rfo, sla
from nocd.tickets import store as tickets_db
from nocd.tickets.service import Tickets

DATA = Path(__file__).resolve().parent.parent / "data"
T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z

CONFIG = """
customers:
  acme: {name: Acme Dental, partner: Example Partner Ltd, support_plan: gold}
support_plans:
  gold:
    response: {critical: 30m, degraded: 2h, low: 8h}
sites:
  main-street:
    name: Main Street Office
    customer: acme
    timezone: Europe/Paris
    country: FR
    devices:
      pbx1: {serial: SN-0001, model: PBX-200, firmware: "5.4.1"}
checks:
  - {name: main-street-pbx, type: tcp, target: "pbx.main-street.example.com:5060",
     site: main-street, device: pbx1}
  - {name: main-street-phones, type: tcp, target: "reg.example.com:5060", site: main-street}
"""


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await Store.open(":memory:")
    yield s
    await s.close()


@pytest.fixture
def config() -> Config:
    return load_text(CONFIG)


async def scripted(store: Store) -> Incident:
    """A degraded incident that turns critical, is paged, acked, annotated and resolved."""
    async with store.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
            "opened_at, acked_at, acked_by, resolved_at, resolved_by) VALUES "
            "('K7Q', 'site:main-street', 'main-street', 'acme', 'critical', 'resolved', "
            "'Main Street: PBX unreachable | phones down', ?, ?, 'alice', ?, 'nocd')",
            (T0, T0 + 420, T0 + 5400),
        )
        inc = int(cur.lastrowid or 0)
        await conn.executemany(
            "INSERT INTO incident_members VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    inc,
                    "main-street-pbx",
                    "critical",
                    "timeout",
                    "no SYN-ACK from 203.0.113.10:5060 within 5s",
                    T0 - 90,
                    T0 + 5340,
                ),
                (
                    inc,
                    "main-street-phones",
                    "degraded",
                    "missing",
                    "12 of 40 phones not registered (ext 201, 202 …)",
                    T0 - 60,
                    T0 + 5300,
                ),
            ],
        )
        script = [
            (
                T0,
                "opened",
                "degraded incident opened: Main Street: PBX unreachable",
                {"severity": "degraded", "reasons": "main-street-phones: 12 of 40 not registered"},
            ),
            (
                T0 + 120,
                "severity",
                "severity rose from degraded to critical",
                {"from": "degraded", "to": "critical"},
            ),
            (T0 + 130, "page", "voice call to +1 555 0100 (alice)", {}),
            (T0 + 420, "ack", "acknowledged by alice via voice", {"by": "alice"}),
            (
                T0 + 3000,
                "note",
                "Root cause: the site's ISP router rebooted into a bad <config>",
                {"by": "alice"},
            ),
            (
                T0 + 3100,
                "note",
                "remedy: restored the router config & asked ISP for an RCA",
                {"by": "alice"},
            ),
            (T0 + 3200, "note", "customer informed by phone", {"by": "bob"}),
            (T0 + 5400, "resolved", "all checks recovered", {"by": "nocd"}),
        ]
        for at, kind, text, data in script:
            await add_event(conn, inc, at, kind, text, data)
        incident = await load(conn, inc)
    assert incident is not None
    return incident


def golden(name: str, text: str) -> None:
    """Compare with tests/data/<name>; NOCD_UPDATE_GOLDEN=1 rewrites it (review the diff)."""
    path = DATA / name
    if os.environ.get("NOCD_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


async def test_rfo_markdown_matches_golden(store: Store, config: Config) -> None:
    incident = await scripted(store)
    text = rfo.render(incident, await events(store.reader, incident.id), config, "markdown")
    golden("rfo_p1.md", text)
    # The facts the SLA asks for are there, with the right times.
    assert "| Outage start | 2026-01-01T09:58:30Z (2026-01-01 10:58 CET) |" in text
    assert "| Duration | 1h31m30s |" in text
    assert "priority P1 (critical)" in text
    assert "- the site's ISP router rebooted into a bad &lt;config&gt;" in text
    assert "PBX unreachable \\| phones down" in text  # a pipe cannot break the table


async def test_rfo_html_matches_golden_and_escapes(store: Store, config: Config) -> None:
    incident = await scripted(store)
    text = rfo.render(incident, await events(store.reader, incident.id), config, "html")
    golden("rfo_p1.html", text)
    assert "bad &lt;config&gt;" in text and "<config>" not in text
    assert "config &amp; asked ISP" in text


async def test_rfo_without_notes_says_what_is_missing(store: Store, config: Config) -> None:
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO incidents (code, group_key, site, severity, state, title, opened_at) "
            "VALUES ('ABC', 'site:x', 'nowhere', 'low', 'triggered', 'odd <b>thing</b>', ?)",
            (T0,),
        )
        incident = await load(conn, "ABC")
    assert incident is not None
    md = rfo.render(incident, [], config)
    assert "Not yet determined" in md and "| Duration | ongoing |" in md
    html = rfo.render(incident, [], config, "html")
    assert "odd &lt;b&gt;thing&lt;/b&gt;" in html
    with pytest.raises(ValueError, match="unknown RFO format"):
        rfo.render(incident, [], config, "pdf")  # type: ignore[arg-type]


async def test_rfo_due_overdue_and_delivered(store: Store, config: Config) -> None:
    clock = FakeClock(T0)
    tickets = Tickets(config, store, clock)
    async with store.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
            "opened_at) VALUES ('P1X', 'site:main-street', 'main-street', 'acme', 'critical', "
            "'triggered', 'PBX down', ?)",
            (T0,),
        )
        inc = int(cur.lastrowid or 0)
        incident = await load(conn, inc)
        assert incident is not None
        await tickets.on_incident(conn, incident, IncidentEvent(IncidentEventKind.OPENED, T0))
        await conn.execute(
            "UPDATE incidents SET state='resolved', resolved_at=? WHERE id=?", (T0 + 600, inc)
        )
        incident = await load(conn, inc)
        assert incident is not None
        await tickets.on_incident(
            conn, incident, IncidentEvent(IncidentEventKind.RESOLVED, T0 + 600)
        )
    due = T0 + 600 + 24 * 3600
    assert [r.due for r in await rfo.owed_rfos(store.reader, T0 + 700)] == [due]
    assert await rfo.overdue_rfos(store.reader, due - 1) == []
    late = await rfo.overdue_rfos(store.reader, due + 60)
    assert [(r.code, r.priority, r.overdue_s) for r in late] == [("P1X", "P1", 60.0)]
    assert late[0].as_json()["due"] == "2026-01-02T10:10:00Z"
    assert (await sla.sla_snapshot(store.reader, due + 60)).rfo_overdue == 1

    async with store.transaction() as conn:
        assert await tickets.mark_rfo_delivered(conn, inc, due + 60, "alice")
        assert not await tickets.mark_rfo_delivered(conn, inc, due + 70, "alice")  # once
    ticket = await tickets_db.by_incident(store.reader, inc)
    assert ticket is not None and ticket.status == "closed" and ticket.rfo_delivered_by == "alice"
    assert await rfo.overdue_rfos(store.reader, due + 120) == []
    comments = await tickets_db.comments(store.reader, ticket.id)
    assert comments[-1].text == "RFO delivered by alice (1m late). Closed."


async def test_low_priority_closes_at_resolve_without_rfo(store: Store, config: Config) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
            "opened_at, resolved_at) VALUES ('LOW', 'site:main-street', 'main-street', 'acme', "
            "'low', 'triggered', 'cert expiring', ?, ?)",
            (T0, T0 + 60),
        )
        incident = await load(conn, "LOW")
        assert incident is not None
        await tickets.on_incident(conn, incident, IncidentEvent(IncidentEventKind.OPENED, T0))
        await tickets.on_incident(
            conn, incident, IncidentEvent(IncidentEventKind.RESOLVED, T0 + 60)
        )
    ticket = await tickets_db.by_incident(store.reader, incident.id)
    assert ticket is not None
    assert (ticket.priority, ticket.status, ticket.rfo_due) == ("P3", "closed", None)
    assert await rfo.owed_rfos(store.reader, T0 + 10**6) == []
