"""Suppressed incidents still failing when the suppression ends are ticketed and paged then.

Through the real pipeline, incident engine, ticket service and pager (dry-run notifier),
with the fake clock: a maintenance window that ends, a silence that expires or is expired by
hand, flapping that stops, an outage that recovers in the window, ticks and a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nocd.clock import FakeClock
from nocd.incidents import silences
from nocd.incidents.config import MaintenanceMatch
from nocd.incidents.model import Incident
from nocd.tickets.service import Tickets
from paging.notifiers import build_notifier
from paging.pager import Pager
from tests.harness import Harness

HOUR = 3600.0
# The harness clock starts Thursday 2026-01-01T00:00Z: Wednesday 19:00 in New York, outside
# the office hours below, so a critical incident pages on-call at once.
BASE = """
customers:
  acme: {name: Acme Dental, partner: Example Partner}
sites:
  main-street: {name: Main Street, customer: acme, timezone: America/New_York}
  elm-street: {name: Elm Street, customer: acme}
support_hours:
  office:
    timezone: America/New_York
    weekly: {mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"],
             thu: ["09:00-18:00"], fri: ["09:00-18:00"]}
paging:
  people:
    alice: {name: Alice Example, phone: "+15550101"}
  escalation_policies:
    noc:
      steps:
        - {people: [alice], channels: [voice], wait: 5m}
  routing:
    default: {support_hours: office, escalation_policy: noc}
"""
ELM_1H = """
maintenance:
  - name: elm-upgrade
    match: {sites: [elm-street]}
    start: 2026-01-01T00:00:00Z
    end: 2026-01-01T01:00:00Z
"""
CHECKS = """
checks:
  - {name: elm-pbx, type: tcp, target: 127.0.0.1:9, site: elm-street, retries: 1}
  - {name: main-pbx, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 2}
"""


@dataclass
class World:
    """The incident harness with the ticket service and the pager subscribed, as the daemon does."""

    h: Harness
    pager: Pager

    async def tick(self) -> None:
        """The daemon's once-a-second housekeeping pass."""
        async with self.h.store.transaction() as conn:
            await self.h.engine.tick(conn)

    async def only(self) -> Incident:
        """The one incident."""
        [inc] = await self.h.incidents()
        return inc

    async def count(self, table: str, inc: Incident) -> int:
        """Rows of `table` (tickets, paging_escalations) for the incident."""
        async with self.h.store.reader.execute(
            f"SELECT COUNT(*) FROM {table} WHERE incident_id=?", (inc.id,)
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def sent(self, inc: Incident) -> tuple[int, int]:
        """(tickets, escalations started) for the incident."""
        return await self.count("tickets", inc), await self.count("paging_escalations", inc)

    async def kinds(self, inc: Incident) -> list[str]:
        """Timeline event kinds."""
        return [e.kind for e in await self.h.timeline(inc.id)]


Make = Callable[..., Awaitable[World]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[World] = []

    async def _make(extra: str = "", clock: FakeClock | None = None) -> World:
        h = await Harness.start(BASE + extra + CHECKS, tmp_path / "nocd.db", clock)
        h.engine.store = h.store  # as the daemon wires it: a rollback undoes memory
        pager = Pager(
            h.store,
            h.config.paging,
            h.config.support_hours,
            build_notifier(h.config.paging.provider),
            h.clock,
            public_url="https://noc.example.com",
        )
        h.engine.subscribe(Tickets(h.config, h.store, h.clock), pages=False)
        h.engine.subscribe(pager, pages=True)
        w = World(h, pager)
        made.append(w)
        return w

    yield _make
    for w in made:
        await w.pager.notifier.close()
        await w.h.close()


async def down_in_window(w: World) -> Incident:
    w.h.fail("elm-pbx")
    await w.h.flush()
    inc = await w.only()
    assert inc.suppressed == "maintenance:elm-upgrade"
    assert await w.sent(inc) == (0, 0)
    return inc


async def test_maintenance_ends_while_still_down_tickets_and_pages_once(make: Make) -> None:
    w = await make(ELM_1H)
    inc = await down_in_window(w)
    w.h.clock.advance(HOUR / 2)
    await w.tick()
    assert await w.sent(inc) == (0, 0)  # the window is still on: nothing
    assert w.h.engine.unrecorded(w.h.clock.now()) == []  # nor from memory
    w.h.clock.set(datetime(2026, 1, 1, 1, 0, tzinfo=UTC))  # the window has ended, still down
    # What the memory pager would page if the store refused the lift's write now.
    [u] = w.h.engine.unrecorded(w.h.clock.now())
    assert (u.group, u.suppressed) == ("site:elm-street", None)
    await w.tick()
    lifted = await w.only()
    assert lifted.suppressed is None and lifted.code == inc.code
    assert await w.sent(inc) == (1, 1)  # one ticket, one page, right at the end
    events = await w.h.timeline(inc.id)
    [ev] = [e for e in events if e.kind == "unsuppressed"]
    assert ev.text == (
        "suppression ended (maintenance elm-upgrade ended), still failing: ticketing and paging now"
    )
    assert ev.at == w.h.clock.now()
    assert any(e.kind == "page" and "escalation started" in e.text for e in events)
    lifts = w.h.metrics.registry.get_sample_value(
        "nocd_incidents_unsuppressed_total", {"reason": "maintenance"}
    )
    assert lifts == 1.0
    # More ticks and more failures change nothing: no second ticket, page or event.
    for _ in range(3):
        w.h.fail("elm-pbx")
        await w.h.flush()
        w.h.clock.advance(1)
        await w.tick()
    assert await w.sent(inc) == (1, 1)
    assert (await w.kinds(inc)).count("unsuppressed") == 1
    assert w.h.engine.unrecorded(w.h.clock.now()) == []


async def test_resolved_in_the_window_is_never_sent(make: Make) -> None:
    w = await make(ELM_1H)
    inc = await down_in_window(w)
    w.h.recover("elm-pbx")
    await w.h.flush()
    assert (await w.only()).state.value == "resolved"
    w.h.clock.set(datetime(2026, 1, 1, 1, 1, tzinfo=UTC))
    await w.tick()
    await w.tick()
    assert await w.sent(inc) == (0, 0)
    assert "unsuppressed" not in await w.kinds(inc)


async def test_lift_is_not_repeated_after_a_restart_nor_lost_by_a_rollback(
    make: Make, tmp_path: Path
) -> None:
    w = await make(ELM_1H)
    inc = await down_in_window(w)
    w.h.clock.set(datetime(2026, 1, 1, 1, 0, tzinfo=UTC))
    # A transaction that does not commit (crash, full disk): nothing happened, in the store
    # or in memory, so the next tick lifts it.
    with pytest.raises(RuntimeError):
        async with w.h.store.transaction() as conn:
            await w.h.engine.tick(conn)
            raise RuntimeError("the commit never happens")
    assert (await w.only()).suppressed == "maintenance:elm-upgrade"
    assert await w.sent(inc) == (0, 0)
    await w.tick()
    assert await w.sent(inc) == (1, 1)
    # Restart over the same database: the lift is not done twice.
    clock = w.h.clock
    w2 = await make(ELM_1H, clock)
    clock.advance(5)
    await w2.tick()
    w2.h.fail("elm-pbx")
    await w2.h.flush()
    await w2.tick()
    assert await w2.sent(inc) == (1, 1)
    assert (await w2.kinds(inc)).count("unsuppressed") == 1


async def test_lift_inside_support_hours_tickets_without_paging(make: Make) -> None:
    # The window ends at 10:00 New York time on a Thursday: the route says ticket only.
    w = await make(ELM_1H.replace("01:00:00Z", "15:00:00Z"))
    inc = await down_in_window(w)
    w.h.clock.set(datetime(2026, 1, 1, 15, 0, tzinfo=UTC))
    await w.tick()
    assert (await w.only()).suppressed is None
    assert await w.sent(inc) == (1, 0)
    routing = [e for e in await w.h.timeline(inc.id) if e.kind == "routing"]
    assert [e.data["page"] for e in routing] == [False]


async def test_acknowledged_in_the_window_is_ticketed_not_paged(make: Make) -> None:
    w = await make(ELM_1H)
    inc = await down_in_window(w)
    assert (await w.h.actions.ack(inc.code, "alice", "dashboard")).changed
    w.h.clock.set(datetime(2026, 1, 1, 1, 0, tzinfo=UTC))
    await w.tick()
    assert (await w.only()).suppressed is None
    assert await w.sent(inc) == (1, 0)  # someone is on it: a ticket, no page
    [ev] = [e for e in await w.h.timeline(inc.id) if e.kind == "unsuppressed"]
    assert "acknowledged: no page" in ev.text


async def silenced(w: World, minutes: float) -> tuple[Incident, int]:
    req = silences.SilenceRequest(
        name="elm-works",
        match=MaintenanceMatch(checks=["elm-pbx"]),
        duration=minutes * 60,
    )
    made = await silences.create(w.h.store, w.h.engine, req, "alice", w.h.clock.now())
    w.h.fail("elm-pbx")
    await w.h.flush()
    inc = await w.only()
    assert inc.suppressed == "silence:elm-works"
    assert await w.sent(inc) == (0, 0)
    return inc, made.id


async def test_silence_expires_while_still_down(make: Make) -> None:
    w = await make()
    inc, _ = await silenced(w, 30)
    w.h.clock.advance(29 * 60)
    await w.tick()
    assert await w.sent(inc) == (0, 0)
    w.h.clock.advance(60)
    await w.tick()
    assert await w.sent(inc) == (1, 1)
    [ev] = [e for e in await w.h.timeline(inc.id) if e.kind == "unsuppressed"]
    assert "silence elm-works ended" in ev.text
    await w.tick()
    assert await w.sent(inc) == (1, 1)


async def test_silence_expired_by_hand_while_still_down(make: Make) -> None:
    w = await make()
    inc, sid = await silenced(w, 120)
    w.h.clock.advance(60)
    _, changed = await silences.expire(w.h.store, w.h.engine, sid, w.h.clock.now())
    assert changed
    await w.tick()
    assert await w.sent(inc) == (1, 1)
    await w.tick()
    assert await w.sent(inc) == (1, 1)


async def test_flapping_then_steadily_down_is_paged_once_flapping_stops(make: Make) -> None:
    w = await make()
    # main-pbx needs 2 failures in a row: alternating results never go hard, but flap.
    for _ in range(6):
        w.h.fail("main-pbx")
        w.h.recover("main-pbx")
    await w.h.flush()
    assert w.h.pipeline.states["main-pbx"].flapping
    w.h.fail("main-pbx", times=2)  # now down for good, while still flapping
    await w.h.flush()
    inc = await w.only()
    assert inc.suppressed == "flapping"
    paged_after = None
    for i in range(40):
        w.h.fail("main-pbx")
        await w.h.flush()
        sent = await w.sent(inc)
        if w.h.pipeline.states["main-pbx"].flapping:
            assert sent == (0, 0)
        elif paged_after is None:
            paged_after = i
            assert sent == (1, 1)  # in the flush that saw flapping stop
        await w.tick()
    assert paged_after is not None
    assert await w.sent(inc) == (1, 1)
    [ev] = [e for e in await w.h.timeline(inc.id) if e.kind == "unsuppressed"]
    assert "flapping stopped" in ev.text


async def test_young_check_down_for_good_is_paged(make: Make) -> None:
    # bench_page's unpaged kill: an unconfirmed check (retries 1, 15 s interval) with four
    # good results since start, 50 s in, goes down for good: paged with the default policy.
    w = await make()
    check = w.h.config.check("elm-pbx")
    assert check.retries == 1
    for _ in range(4):
        w.h.feed("elm-pbx", True)
        w.h.clock.advance(15)
    await w.h.flush()
    w.h.feed("elm-pbx", False)  # history 11110: was 30.000000000000004 % > 30, "flapping"
    await w.h.flush()
    assert not w.h.pipeline.states["elm-pbx"].flapping
    inc = await w.only()
    assert inc.suppressed is None
    assert await w.sent(inc) == (1, 1)  # paged at once, not only once "flapping" stops
    for _ in range(3):
        w.h.clock.advance(15)
        w.h.feed("elm-pbx", False)
        await w.h.flush()
        assert not w.h.pipeline.states["elm-pbx"].flapping
    assert await w.sent(inc) == (1, 1)
