"""Tickets service: one ticket per incident, priorities and due times per change, comments,
timeline events and one deterministic outbox row per sink and operation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from nocd.clock import FakeClock
from nocd.config import Config
from nocd.configload import load_text
from nocd.delivery import DeliveryError
from nocd.incidents.model import Incident, IncidentEvent, IncidentEventKind, load
from nocd.incidents.timeline import events
from nocd.model import Severity
from nocd.outbox import OutboxItem
from nocd.store import Store
from nocd.tickets import store as db
from nocd.tickets.service import Tickets, outbox_key
from nocd.tickets.sink import TicketOp

T0 = 1_767_261_600.0  # Thursday 2026-01-01T10:00:00Z
BASE = """
customers:
  acme: {name: Acme Dental, partner: Example Partner Ltd, support_plan: platinum}
support_plans:
  platinum:
    response: {critical: 15m, degraded: 1h, low: 4h}
    resolve: {critical: 4h, degraded: 1d, low: 3d}
sites:
  main-street:
    name: Main Street Office
    customer: acme
    timezone: Europe/Paris
    country: FR
    contacts: [{name: Dana Example, role: office manager, phone: "+1 555 0142"}]
    devices:
      pbx1: {serial: SN-0001, model: PBX-200, firmware: "5.4.1", country: FR}
      sw1: {kind: switch, serial: SW-9}
checks:
  - {name: pbx, type: tcp, target: "pbx.example.com:5060", site: main-street, device: pbx1}
  - {name: web, type: tcp, target: "portal.example.com:443", site: main-street}
"""
SINKS = """
tickets:
  sinks:
    hook: {type: webhook, url: "http://127.0.0.1:9/hook", secret: "${NOCD_TEST_HOOK_KEY}"}
    off: {type: webhook, url: "http://127.0.0.1:9/x", secret: "${NOCD_TEST_HOOK_KEY}",
          enabled: false}
"""


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await Store.open(":memory:")
    yield s
    await s.close()


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("NOCD_TEST_HOOK_KEY", "hook-key-5f0c")
    return load_text(BASE + SINKS)


async def new_incident(
    store: Store, severity: Severity = Severity.DEGRADED, suppressed: str | None = None
) -> Incident:
    async with store.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
            "opened_at, suppressed) VALUES ('K7Q', 'site:main-street', 'main-street', 'acme', "
            "?, 'triggered', 'Main Street: PBX unreachable', ?, ?)",
            (severity.value, T0, suppressed),
        )
        inc = int(cur.lastrowid or 0)
        await conn.execute(
            "INSERT INTO incident_members VALUES (?, 'pbx', ?, 'timeout', "
            "'no SYN-ACK from 203.0.113.10:5060 (RTT n/a)', ?, NULL)",
            (inc, severity.value, T0 - 90),
        )
        incident = await load(conn, inc)
    assert incident is not None
    return incident


async def tell(
    store: Store,
    tickets: Tickets,
    inc: int,
    kind: IncidentEventKind,
    at: float,
    by: str = "nocd",
    text: str = "",
    previous: Severity | None = None,
    **cols: object,
) -> None:
    async with store.transaction() as conn:
        if cols:
            sets = ", ".join(f"{k}=?" for k in cols)
            await conn.execute(f"UPDATE incidents SET {sets} WHERE id=?", (*cols.values(), inc))
        incident = await load(conn, inc)
        assert incident is not None
        event = IncidentEvent(kind, at, by=by, via="api", text=text, previous=previous)
        await tickets.on_incident(conn, incident, event)


async def outbox_rows(store: Store) -> list[tuple[str, str, dict[str, object]]]:
    async with store.reader.execute("SELECT key, kind, payload FROM outbox ORDER BY id") as cur:
        return [(r[0], r[1], json.loads(r[2])) for r in await cur.fetchall()]


async def test_open_builds_the_ticket_with_facts_and_dues(store: Store, config: Config) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    inc = await new_incident(store)
    await tell(store, tickets, inc.id, IncidentEventKind.OPENED, T0)
    t = await db.by_incident(store.reader, inc.id)
    assert t is not None
    assert (t.status, t.priority, t.plan) == ("open", "P2", "platinum")
    assert t.response_due == T0 + 3600 and t.resolve_due == T0 + 86400
    assert t.fingerprint == f"nocd-{inc.id}-{int(T0)}"
    assert t.facts == {
        "site": "main-street (Main Street Office)",
        "customer": "acme (Acme Dental)",
        "partner": "Example Partner Ltd",
        "support_plan": "platinum",
        "country": "FR",
        "timezone": "Europe/Paris",
        "contacts": "Dana Example, office manager, +1 555 0142",
        "pbx": "pbx1",  # the device the failing check names, not the switch
        "serial": "SN-0001",
        "model": "PBX-200",
        "firmware": "5.4.1",
        "pbx_country": "FR",
    }
    assert "since 2026-01-01T10:00:00Z (2026-01-01 11:00 CET)" in t.description
    assert "- pbx: degraded (timeout) since 2026-01-01T09:58:30Z" in t.description
    assert "evidence: no SYN-ACK from 203.0.113.10:5060" in t.description
    # Replayed opens (after a restart) change nothing; the database refuses a second row.
    await tell(store, tickets, inc.id, IncidentEventKind.OPENED, T0 + 5)
    assert [c.seq for c in await db.comments(store.reader, t.id)] == [1]
    with pytest.raises(Exception, match="UNIQUE"):
        async with store.transaction() as conn:
            await db.insert(conn, t.changed(fingerprint="other"))


async def test_every_change_is_a_comment_an_event_and_one_row_per_sink(
    store: Store, config: Config
) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    inc = (await new_incident(store)).id
    await tell(store, tickets, inc, IncidentEventKind.OPENED, T0)
    # Up: the 15 min critical target counts from the change, and may only shorten the due.
    await tell(
        store, tickets, inc, IncidentEventKind.SEVERITY, T0 + 300,
        previous=Severity.DEGRADED, severity="critical",
    )  # fmt: skip
    t = await db.by_incident(store.reader, inc)
    assert t is not None and (t.priority, t.worst_priority) == ("P1", "P1")
    assert t.response_due == T0 + 300 + 900 and t.resolve_due == T0 + 300 + 4 * 3600
    # Down again: the degraded target counts from the opening (the customer waited since).
    await tell(
        store, tickets, inc, IncidentEventKind.SEVERITY, T0 + 600,
        previous=Severity.CRITICAL, severity="degraded",
    )  # fmt: skip
    t = await db.by_incident(store.reader, inc)
    assert t is not None and (t.priority, t.worst_priority) == ("P2", "P1")
    assert t.response_due == T0 + 3600
    await tell(store, tickets, inc, IncidentEventKind.MEMBERS, T0 + 700, text="1 recovered")
    await tell(
        store, tickets, inc, IncidentEventKind.ACKNOWLEDGED, T0 + 900, by="alice",
        state="acknowledged", acked_at=T0 + 900, acked_by="alice",
    )  # fmt: skip
    await tell(
        store, tickets, inc, IncidentEventKind.NOTE, T0 + 1000, by="bob",
        text="root cause: ISP router",
    )  # fmt: skip
    t = await db.by_incident(store.reader, inc)
    assert t is not None and t.status == "acknowledged" and t.responded_at == T0 + 900
    texts = [(c.seq, c.kind, c.text) for c in await db.comments(store.reader, t.id)]
    assert texts == [
        (1, "opened", "Ticket opened: P2 (degraded), plan platinum, "
                      "response due 2026-01-01T11:00:00Z."),
        (2, "severity", "Severity rose from degraded to critical: priority P2 → P1. "
                        "Response due 2026-01-01T10:20:00Z."),
        (3, "severity", "Severity fell from critical to degraded: priority P1 → P2. "
                        "Response due 2026-01-01T11:00:00Z."),
        (4, "members", "1 recovered"),
        (5, "acknowledged", "Acknowledged by alice via api. Response target met (45m to spare)."),
        (6, "note", "Note by bob: root cause: ISP router"),
    ]  # fmt: skip
    ticket_events = [e for e in await events(store.reader, inc) if e.kind == "ticket"]
    assert [e.data["seq"] for e in ticket_events] == [1, 2, 3, 4, 5, 6]
    rows = await outbox_rows(store)
    # One row per enabled sink per op, keyed by incident, sink and op number; none for "off".
    assert [(k, kind) for k, kind, _ in rows] == [
        (outbox_key(inc, "hook", n), "ticket:hook") for n in range(1, 7)
    ]
    ops = [TicketOp.from_payload(p) for _, _, p in rows]
    assert [o.action for o in ops] == ["create"] + ["update"] * 5
    assert ops[1].ticket.priority == "P1" and ops[4].ticket.status == "acknowledged"
    assert "hook-key-5f0c" not in json.dumps([p for _, _, p in rows])


async def test_late_ack_is_recorded_as_missed(store: Store, config: Config) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    inc = (await new_incident(store, Severity.CRITICAL)).id
    await tell(store, tickets, inc, IncidentEventKind.OPENED, T0)
    await tell(store, tickets, inc, IncidentEventKind.ACKNOWLEDGED, T0 + 1500, by="alice")
    t = await db.by_incident(store.reader, inc)
    assert t is not None
    last = (await db.comments(store.reader, t.id))[-1]
    assert last.text.endswith("Response target missed by 10m.")


async def test_suppressed_incidents_get_no_ticket_until_unsuppressed(
    store: Store, config: Config
) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    inc = (await new_incident(store, suppressed="maintenance:pbx-upgrade")).id
    await tell(store, tickets, inc, IncidentEventKind.OPENED, T0)
    assert await db.by_incident(store.reader, inc) is None
    assert await outbox_rows(store) == []
    await tell(store, tickets, inc, IncidentEventKind.MEMBERS, T0 + 60, suppressed=None)
    assert await db.by_incident(store.reader, inc) is not None


async def test_tickets_disabled_writes_nothing(store: Store, config: Config) -> None:
    off = config.model_copy(
        update={"tickets": config.tickets.model_copy(update={"enabled": False})}
    )
    tickets = Tickets(off, store, FakeClock(T0))
    inc = (await new_incident(store)).id
    await tell(store, tickets, inc, IncidentEventKind.OPENED, T0)
    assert await db.by_incident(store.reader, inc) is None


async def test_handlers_follow_reloads(store: Store, config: Config) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    assert set(tickets.handlers()) == {"ticket:hook", "ticket:off"}
    inc = (await new_incident(store)).id
    await tell(store, tickets, inc, IncidentEventKind.OPENED, T0)
    key, kind, payload = (await outbox_rows(store))[0]
    handler = tickets.handlers()["ticket:hook"]
    tickets.reload(load_text(BASE))  # the sink was removed from the config
    with pytest.raises(DeliveryError) as err:
        await handler(OutboxItem(1, key, kind, payload, inc, 1))
    assert not err.value.retryable and "'hook' is not configured" in err.value.reason
    assert tickets.handlers() == {}


async def test_escalation_comment_goes_to_the_sinks(store: Store, config: Config) -> None:
    tickets = Tickets(config, store, FakeClock(T0))
    inc = await new_incident(store, Severity.CRITICAL)
    async with store.transaction() as conn:
        assert not await tickets.comment(conn, inc, T0, "escalation", "no ticket yet")
        await tickets.on_incident(conn, inc, IncidentEvent(IncidentEventKind.OPENED, T0))
        text = "Escalated to step 2: calling bob (+1 555 0102)"
        assert await tickets.comment(conn, inc, T0 + 600, "escalation", text)
    t = await db.by_incident(store.reader, inc.id)
    assert t is not None
    last = (await db.comments(store.reader, t.id))[-1]
    assert (last.seq, last.kind, last.text) == (2, "escalation", text)
    rows = await outbox_rows(store)
    assert rows[-1][0] == outbox_key(inc.id, "hook", 2)
    assert TicketOp.from_payload(rows[-1][2]).comment == text
