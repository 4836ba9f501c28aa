"""Disk full: the store refuses writes while the daemon runs; nothing is lost, it is all said.

The state database's commits fail with SQLite's own "database or disk is full" (the store's
transaction is swapped, in this process, for one that runs the body and then fails its
COMMIT, as SQLITE_FULL does). While it lasts: /readyz says store_writable false,
nocd_store_writable is 0, errors are logged, and transitions stay in memory. When space
returns they are flushed: the incident opens and the page goes out.

What does NOT happen while the disk is full (by design, see RESULTS.md): no incident is
opened and nobody is paged, because a page is only ever sent from the outbox, which lives in
the same database. Paging around a full disk would need a second, independent path.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from nocd.store import Store, StoreError
from tests.fakes.twilio_fake import FakeTwilio
from tests.peers import free_port

SID = "AC" + "0" * 31 + "d"
TOKEN = "disk-full-test-token"


class DiskFull:
    """Makes a store's commits fail like SQLITE_FULL while `full` is set."""

    def __init__(self, store: Store) -> None:
        self.full = False
        self.refused = 0
        self._store = store
        self._real = store.transaction
        store.transaction = self.transaction  # type: ignore[method-assign]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        if not self.full:
            async with self._real() as conn:
                yield conn
            return
        async with self._store._write_lock:
            db = self._store.reader
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            finally:
                await db.execute("ROLLBACK")
            self.refused += 1
            err = sqlite3.OperationalError("database or disk is full")
            raise StoreError(f"commit failed: {err}") from err


def config(tmp: Path, port: int, target: int, twilio: str) -> str:
    return f"""
daemon:
  listen: 127.0.0.1:{port}
  public_url: https://noc.example.com
  state_path: {tmp}/nocd.db
checks:
  - name: pbx
    type: tcp
    target: 127.0.0.1:{target}
    interval: 1s
    timeout: 300ms
    retries: 1
    on_failure: critical
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_DF_SID}}
    auth_token: ${{NOCD_DF_TOKEN}}
    from_number: "+15550100"
    api_base_url: {twilio}
    timeout: 1s
  people:
    alice: {{name: Alice Example, phone: "+15550101"}}
  escalation_policies:
    noc:
      steps:
        - {{people: [alice], channels: [voice], wait: 1h}}
  routing:
    default: {{support_hours: "24x7", page_in_hours: true, escalation_policy: noc}}
"""


async def until(pred: Callable[[], Any], what: str, limit: float = 15.0) -> None:
    end = time.monotonic() + limit
    while True:
        got = pred()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class World:
    """A running daemon, its TCP target, the Twilio fake and the disk switch."""

    def __init__(self, daemon: Daemon, fake: FakeTwilio, disk: DiskFull, srv: Any) -> None:
        self.daemon, self.fake, self.disk, self.srv = daemon, fake, disk, srv
        assert daemon.bound is not None
        self.base = f"http://127.0.0.1:{daemon.bound[1]}"

    async def ready(self) -> tuple[int, dict[str, bool]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/readyz") as r:
            return r.status, (await r.json())["conditions"]

    async def writable_metric(self) -> float:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/metrics") as r:
            text = await r.text()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == "nocd_store_writable":
                    return float(s.value)
        raise AssertionError("nocd_store_writable missing")

    async def incidents(self) -> int:
        assert self.daemon.store is not None
        async with self.daemon.store.reader.execute("SELECT COUNT(*) FROM incidents") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def outbox(self, state: str) -> int:
        assert self.daemon.store is not None
        async with self.daemon.store.reader.execute(
            "SELECT COUNT(*) FROM outbox WHERE state=?", (state,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def take_down(self) -> None:
        self.srv.close()
        await self.srv.wait_closed()


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("NOCD_DF_SID", SID)
    monkeypatch.setenv("NOCD_DF_TOKEN", TOKEN)

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    target = int(srv.sockets[0].getsockname()[1])
    async with FakeTwilio(SID, TOKEN) as fake:
        cfg = load_text(config(tmp_path, free_port(), target, fake.base_url))
        daemon = Daemon(cfg, notifier=Notifier(environ={}))
        await daemon.start()
        assert daemon.store is not None
        w = World(daemon, fake, DiskFull(daemon.store), srv)
        try:
            yield w
        finally:
            w.disk.full = False
            await daemon.stop()
            srv.close()
            await srv.wait_closed()


async def test_transitions_wait_in_memory_and_flush_when_space_returns(world: World) -> None:
    await until(lambda: world.daemon.pipeline and world.daemon.pipeline.states, "first probe")
    assert (await world.ready())[0] == 200
    world.disk.full = True
    with structlog.testing.capture_logs() as logs:
        await world.take_down()
        pipeline = world.daemon.pipeline
        assert pipeline is not None
        await until(lambda: not pipeline.store_writable, "a refused flush")
        status, conditions = await world.ready()
        assert status == 503 and conditions["store_writable"] is False
        assert await world.writable_metric() == 0
        await asyncio.sleep(1.5)  # several flush attempts, all refused
        assert pipeline.pending_changes >= 1  # the DOWN transition is kept
        assert await world.incidents() == 0 and world.fake.creates("call") == []
        assert not pipeline.states["pbx"].up  # the API/dashboard still see it down
    flush_errors = [e for e in logs if e["event"] == "state flush failed; will retry"]
    assert flush_errors and "database or disk is full" in flush_errors[0]["error"]
    assert flush_errors[0]["log_level"] == "error"
    # Space returns: the kept transition opens the incident and the page goes out.
    world.disk.full = False
    await until(world.incidents, "the incident, once the disk has space")
    await until(lambda: len(world.fake.creates("call")) == 1, "the page")
    assert (await world.ready())[0] == 200
    assert await world.writable_metric() == 1
    assert world.daemon.pipeline is not None and world.daemon.pipeline.pending_changes == 0


async def test_a_send_whose_bookkeeping_is_refused_is_retried_not_stranded(world: World) -> None:
    # The page is claimed from the outbox while the disk has space; Twilio hangs; the disk
    # fills; Twilio fails the request. Recording that failure is refused by the store.
    world.fake.set_mode("timeout")
    await until(lambda: world.daemon.pipeline and world.daemon.pipeline.states, "first probe")
    await world.take_down()
    await until(lambda: len(world.fake.requests) >= 1, "the call attempt reaching Twilio")
    assert await world.outbox("sending") == 1
    world.disk.full = True
    world.fake.set_mode("ok")  # the hung request now fails (503): a retryable error
    await until(lambda: world.disk.refused >= 2, "the failure's bookkeeping refused")
    await asyncio.sleep(0.5)
    world.disk.full = False
    # Nothing was sent; the row must go back to the queue and the page out, without a restart.
    await until(lambda: len(world.fake.calls) == 1, "the page after the disk recovered", 20.0)
    await until(lambda: world.outbox("done"), "the outbox row done")
    assert await world.outbox("sending") == 0 and len(world.fake.calls) == 1
