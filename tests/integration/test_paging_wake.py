"""A step recorded due now is fired and delivered at once, not at the paging loop's next poll.

The daemon's paging and outbox polls are set to an hour, so only the immediate paths can
make the page go out while the test runs: the step fired in the flush that opened the
incident (or, without that, the paging loop woken by the escalation's start) and the
outbox worker woken by the enqueue. The control test takes both away and sees no page.
Time is a FakeClock.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nocd.clock import FakeClock
from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from paging.notifiers import DryRunNotifier
from tests.peers import free_port

HOUR = 3600.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path) -> str:
    return f"""
daemon:
  listen: 127.0.0.1:{free_port()}
  state_path: {tmp}/nocd.db
checks:
  - name: pbx
    type: tcp
    target: 127.0.0.1:{closed_port()}
    interval: 1s
    timeout: 300ms
    retries: 1
    on_failure: critical
paging:
  people:
    alice: {{name: Alice Example, phone: "+15550101"}}
  escalation_policies:
    noc:
      steps:
        - {{people: [alice], channels: [voice], wait: 1h}}
  routing:
    default: {{support_hours: "24x7", page_in_hours: true, escalation_policy: noc}}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(load_text(config(tmp_path)), clock=FakeClock(), notifier=Notifier(environ={}))
    d.poll_fallback = HOUR  # no poll can deliver the page during the test
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


def sent(d: Daemon) -> list[str]:
    assert d.pager is not None and isinstance(d.pager.notifier, DryRunNotifier)
    return [p.key for p in d.pager.notifier.sent]


async def wait_for(pred: object, limit: float = 10.0) -> bool:
    """Poll `pred` until true or `limit` seconds pass (a bound, not a measurement)."""
    assert callable(pred)
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_the_first_step_fires_in_the_flush_and_the_outbox_is_woken(daemon: Daemon) -> None:
    assert await wait_for(lambda: sent(daemon)), "the page should go out without any poll"
    # Only the paging loop's start-up pass ran: the step fired in the incident's own flush.
    assert daemon.paging_passes == 1
    assert len(sent(daemon)) == 1 and sent(daemon)[0].startswith("page.")
    assert daemon.store is not None
    async with daemon.store.reader.execute("SELECT step, state FROM paging_escalations") as cur:
        assert [tuple(r) for r in await cur.fetchall()] == [(1, "active")]


async def test_escalation_start_wakes_the_paging_loop(daemon: Daemon) -> None:
    assert daemon.pager is not None
    daemon.pager.fire_in_flush_enabled = False
    assert await wait_for(lambda: sent(daemon)), "the page should go out without any poll"
    # Two passes: the one at start-up and the one the escalation start asked for.
    assert daemon.paging_passes == 2
    assert len(sent(daemon)) == 1


async def test_without_either_the_page_waits_for_the_poll(daemon: Daemon) -> None:
    # Control: with both immediate paths removed nobody is paged while the (hour-long) poll
    # has not come round, so the tests above measure those paths.
    assert daemon.pager is not None
    daemon.pager.fire_in_flush_enabled = False
    daemon.pager.on_due = None
    assert await wait_for(lambda: daemon.engine is not None and daemon.engine._open)
    assert not await wait_for(lambda: sent(daemon), limit=1.5)
    assert daemon.store is not None
    async with daemon.store.reader.execute("SELECT step FROM paging_escalations") as cur:
        assert [r[0] for r in await cur.fetchall()] == [0]  # recorded due, not fired
