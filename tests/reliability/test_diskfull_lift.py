"""A silence ends while its outage is still down and the disk is full: paged from memory, once.

The running daemon (tests/reliability/test_diskfull.py's world: real probes, the Twilio fake
through the official client, COMMIT refused with SQLITE_FULL). The outage opens suppressed
by a silence; the silence ends while the store refuses writes, so the lift cannot be
written: the memory pager pages it (the engine reports it as unrecorded), and once the disk
has space the lift commits, takes the code already paged and hands the escalation over
without a second page for step 1.
"""

from __future__ import annotations

from typing import Any

from nocd.incidents import silences
from nocd.incidents.config import MaintenanceMatch
from tests.reliability.test_diskfull import ALICE, World, make_world, until

__all__ = ["make_world"]  # the fixture, re-used


async def test_silence_ends_while_disk_full_pages_from_memory_then_lifts(
    make_world: Any,
) -> None:
    world: World = await make_world()
    daemon = world.daemon
    assert daemon.store is not None and daemon.engine is not None
    req = silences.SilenceRequest(
        name="hq-works", match=MaintenanceMatch(checks=["pbx"]), duration=600.0
    )
    await silences.create(daemon.store, daemon.engine, req, "alice", world.clock.now())
    await world.take_down()

    async def suppressed() -> bool:
        rows = await world.rows("SELECT suppressed FROM incidents")
        return rows == [("silence:hq-works",)]

    await until(suppressed, "the incident, opened suppressed by the silence")
    await world.committed()
    await world.passes(3)
    assert world.calls_to() == []  # silenced: nobody paged
    assert await world.count("tickets") == 0

    world.disk.full = True
    await until(lambda: world.disk.refused >= 1, "a refused write")
    world.clock.advance(601)  # the silence is over; pbx is still down
    await until(lambda: world.calls_to() == [ALICE], "the page from memory", 10.0)
    await world.passes(4)
    assert world.calls_to() == [ALICE]  # once
    assert await suppressed()  # the lift could not be written
    assert daemon.memory is not None
    code = daemon.memory.outages["site:hq"].code

    world.disk.full = False

    async def lifted() -> bool:
        return await world.rows("SELECT suppressed, code FROM incidents") == [(None, code)]

    await until(lifted, "the lift, once the disk has space")
    await world.committed()
    await until(lambda: world.count("tickets"), "the ticket")
    await world.passes(3)
    assert world.calls_to() == [ALICE]  # handed over: no second page for step 1
    kinds = [r[0] for r in await world.rows("SELECT kind FROM timeline ORDER BY id")]
    assert kinds.count("unsuppressed") == 1
    texts = [r[0] for r in await world.rows("SELECT text FROM timeline")]
    assert any("handed over from memory" in t for t in texts)
