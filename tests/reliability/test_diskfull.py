"""Disk full / read-only: the store refuses writes while the daemon runs; pages still go out.

Two real refusals, below the store's own code: the connection's COMMIT fails with SQLite's
"database or disk is full" (SQLITE_FULL; root ignores file modes and a small tmpfs needs
privileges, so the COMMIT statement is the one thing swapped), and `PRAGMA query_only`
makes SQLite itself refuse every write as a read-only database (SQLITE_READONLY).

While it lasts: /readyz says store_writable false, nocd_store_writable is 0,
nocd_paging_from_memory is 1, errors are logged, transitions wait in memory — and a
critical outage is paged from memory through the real Twilio client (to the fake), once
per escalation step, never a storm. When the store accepts writes again, the incident and
its ticket are written, take the code already paged, and the stored escalation carries on
where the memory one stands: no second page for step 1, step 2 at its deadline. An ack by
keypress while the store is unwritable is kept in memory and applied to the incident. An
escalation already stored whose next step comes due meanwhile is read from the store and
that step sent from memory, once; on recovery the stored escalation is carried past it.
Escalation time is a FakeClock moved by the test; probes and HTTP run for real.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from nocd.clock import FakeClock
from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from nocd.store import Store
from tests.fakes.twilio_fake import FakeTwilio
from tests.peers import free_port

SID = "AC" + "0" * 31 + "d"
TOKEN = "disk-full-test-token"
ALICE, BOB = "+15550101", "+15550102"
STEP_WAIT = 120.0


class DiskFull:
    """Makes the store connection's COMMIT fail with SQLITE_FULL while `full` is set."""

    def __init__(self, store: Store) -> None:
        self.full = False
        self.refused = 0
        db = store.reader
        real = db.execute

        def execute(sql: str, parameters: Any = None) -> Any:
            if self.full and sql.strip().upper() == "COMMIT":
                self.refused += 1
                return self._refuse()
            return real(sql, parameters)

        db.execute = execute  # type: ignore[method-assign]

    @staticmethod
    async def _refuse() -> None:
        err = sqlite3.OperationalError("database or disk is full")
        err.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL, as SQLite sets it
        raise err


def config(tmp: Path, port: int, target: int, twilio: str, checks: int = 1) -> str:
    names = ["pbx"] if checks == 1 else [f"phone-{i:02d}" for i in range(checks)]
    lines = "".join(
        f"""
  - name: {n}
    type: tcp
    site: hq
    target: 127.0.0.1:{target}
    interval: 1s
    timeout: 300ms
    retries: 1
    on_failure: critical"""
        for n in names
    )
    return f"""
daemon:
  listen: 127.0.0.1:{port}
  public_url: https://noc.example.com
  state_path: {tmp}/nocd.db
sites:
  hq: {{name: Head Office, timezone: UTC}}
checks:{lines}
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_DF_SID}}
    auth_token: ${{NOCD_DF_TOKEN}}
    from_number: "+15550100"
    api_base_url: {twilio}
    timeout: 1s
  people:
    alice: {{name: Alice Example, phone: "{ALICE}"}}
    bob: {{name: Bob Example, phone: "{BOB}"}}
  escalation_policies:
    noc:
      steps:
        - {{people: [alice], channels: [voice], wait: {int(STEP_WAIT)}s}}
        - {{people: [bob], channels: [voice], wait: 1h}}
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
    """A running daemon, its TCP target, the Twilio fake, the disk switch and the clock."""

    def __init__(
        self, daemon: Daemon, fake: FakeTwilio, disk: DiskFull, srv: Any, clock: FakeClock
    ) -> None:
        self.daemon, self.fake, self.disk, self.srv, self.clock = daemon, fake, disk, srv, clock
        assert daemon.bound is not None
        self.base = f"http://127.0.0.1:{daemon.bound[1]}"
        fake.webhook_base = self.base

    async def ready(self) -> tuple[int, dict[str, bool]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/readyz") as r:
            return r.status, (await r.json())["conditions"]

    async def metric(self, name: str, **labels: str) -> float:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/metrics") as r:
            text = await r.text()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise AssertionError(f"{name} missing")

    async def committed(self) -> None:
        """Wait for the transaction in flight (reads share its connection and see it early)."""
        assert self.daemon.store is not None
        async with self.daemon.store._write_lock:
            pass

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        assert self.daemon.store is not None
        async with self.daemon.store.reader.execute(sql, args) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def count(self, table: str) -> int:
        return int((await self.rows(f"SELECT COUNT(*) FROM {table}"))[0][0])

    async def outbox(self, state: str) -> int:
        return int((await self.rows("SELECT COUNT(*) FROM outbox WHERE state=?", state))[0][0])

    def calls_to(self) -> list[str]:
        return [str(r.form.get("To")) for r in self.fake.creates("call")]

    async def passes(self, n: int = 3) -> None:
        """Let the paging loop run `n` more passes (each would page again if it were to)."""
        start = self.daemon.paging_passes
        await until(lambda: self.daemon.paging_passes >= start + n, f"{n} paging passes")

    async def take_down(self) -> None:
        self.srv.close()
        await self.srv.wait_closed()

    async def read_only(self, on: bool) -> None:
        """SQLite's own read-only refusal (SQLITE_READONLY) for every write, or back."""
        assert self.daemon.store is not None
        await self.daemon.store.reader.execute(f"PRAGMA query_only={int(on)}")


@pytest.fixture
async def make_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    monkeypatch.setenv("NOCD_DF_SID", SID)
    monkeypatch.setenv("NOCD_DF_TOKEN", TOKEN)
    worlds: list[World] = []

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    async def make(checks: int = 1) -> World:
        srv = await asyncio.start_server(accept, "127.0.0.1", 0)
        target = int(srv.sockets[0].getsockname()[1])
        fake = await FakeTwilio(SID, TOKEN).__aenter__()
        cfg = load_text(config(tmp_path, free_port(), target, fake.base_url, checks))
        clock = FakeClock()
        daemon = Daemon(cfg, clock=clock, notifier=Notifier(environ={}))
        await daemon.start()
        assert daemon.store is not None
        w = World(daemon, fake, DiskFull(daemon.store), srv, clock)
        worlds.append(w)
        await until(
            lambda: len(daemon.pipeline.states if daemon.pipeline else ()) == checks, "probes"
        )
        return w

    yield make
    for w in worlds:
        w.disk.full = False
        await w.read_only(False)
        await w.daemon.stop()
        await w.fake.__aexit__()
        w.srv.close()
        await w.srv.wait_closed()


async def test_disk_full_pages_once_from_memory_then_hands_over(make_world: Any) -> None:
    world: World = await make_world()
    t0 = world.clock.now()
    assert (await world.ready())[0] == 200
    world.disk.full = True
    with structlog.testing.capture_logs() as logs:
        await world.take_down()
        started = time.monotonic()
        await until(lambda: world.fake.creates("call"), "the page from memory", 10.0)
        seconds = time.monotonic() - started
        await world.passes(4)  # four more passes, the pipeline's flush refused each second
        assert world.calls_to() == [ALICE]  # once, exactly once
        call = world.fake.creates("call")[0]
        assert "/twilio/voice/mem." in str(call.form.get("Url"))
        assert await world.count("incidents") == 0  # nothing could be written
        status, conditions = await world.ready()
        assert status == 503 and conditions["store_writable"] is False
        assert await world.metric("nocd_store_writable") == 0
        assert await world.metric("nocd_paging_from_memory") == 1
        assert await world.metric("nocd_memory_pages_total", channel="voice") == 1
        # Time passes, short of step 2's deadline: nobody else is paged.
        world.clock.advance(STEP_WAIT - 30)
        await world.passes(2)
        assert world.calls_to() == [ALICE]
    print(f"disk full: page from memory {seconds:.2f} s after the target went down")
    assert seconds < 5.0
    said = [e for e in logs if e["event"] == "paging from memory, store unwritable"]
    assert len(said) == 1 and said[0]["log_level"] == "error"
    assert "database or disk is full" in said[0]["store_error"]
    refused = [e for e in logs if e["event"] == "state flush failed; will retry"]
    assert refused and "database or disk is full" in refused[0]["error"]
    code = world.daemon.memory.outages["site:hq"].code  # type: ignore[union-attr]

    # Space returns: the incident and its ticket are written, with the code already paged.
    world.disk.full = False
    await until(lambda: world.count("incidents"), "the incident, once the disk has space")
    await world.committed()
    await until(lambda: world.count("tickets"), "the ticket")
    await world.committed()
    incident_id, got_code, state = (await world.rows("SELECT id, code, state FROM incidents"))[0]
    assert (got_code, state) == (code, "triggered")
    esc = await world.rows("SELECT step, state, next_fire_at FROM paging_escalations")
    assert esc == [(1, "active", t0 + STEP_WAIT)]  # step 2 keeps its deadline
    pages = await world.rows("SELECT key, person, status, provider_id FROM paging_pages")
    assert [(p[1], p[2]) for p in pages] == [("alice", "sent")]
    assert pages[0][0].startswith(f"mem.{code}.") and pages[0][3] == next(iter(world.fake.calls))
    events = await world.rows("SELECT text FROM timeline WHERE incident_id=?", incident_id)
    assert any("paged from memory" in e[0] for e in events)
    assert any("handed over from memory" in e[0] for e in events)
    await world.passes(3)
    assert world.calls_to() == [ALICE]  # no second page for step 1
    status, _ = await world.ready()
    assert status == 200 and await world.metric("nocd_store_writable") == 1

    async def memory_gauge_off() -> bool:
        return await world.metric("nocd_paging_from_memory") == 0

    await until(memory_gauge_off, "the memory gauge back to 0")
    # Step 2 on schedule, from the store.
    world.clock.advance(29)
    await world.passes(2)
    assert world.calls_to() == [ALICE]
    world.clock.advance(2)
    await until(lambda: world.calls_to() == [ALICE, BOB], "step 2 at its deadline")
    await world.passes(3)
    assert world.calls_to() == [ALICE, BOB]


async def test_storm_at_one_site_read_only_store_pages_once(make_world: Any) -> None:
    # 50 checks at one site fail together while SQLite refuses every write as read-only.
    world: World = await make_world(checks=50)
    await world.read_only(True)
    with structlog.testing.capture_logs() as logs:
        await world.take_down()
        await until(lambda: world.fake.creates("call"), "the page from memory", 10.0)
        pipeline = world.daemon.pipeline
        assert pipeline is not None
        await until(lambda: all(not s.up for s in pipeline.states.values()), "all 50 down")
        await world.passes(4)
        assert world.calls_to() == [ALICE]  # one outage, one page: no storm
        assert (await world.ready())[0] == 503
        assert await world.metric("nocd_paging_from_memory") == 1
    said = [e for e in logs if e["event"] == "paging from memory, store unwritable"]
    assert len(said) == 1 and "readonly" in said[0]["store_error"]
    assert said[0]["group"] == "site:hq"  # titled after the first check down; one outage
    memory = world.daemon.memory
    assert memory is not None and memory.outages["site:hq"].title.startswith("50 checks failing")
    await world.read_only(False)
    await until(lambda: world.count("incidents"), "the incident, once writable")
    await world.committed()

    async def all_members() -> bool:
        return await world.count("incident_members") == 50

    await until(all_members, "all 50 members written")
    await world.passes(3)
    assert world.calls_to() == [ALICE]
    assert await world.count("incidents") == 1


async def test_ack_by_keypress_while_unwritable_is_kept_and_applied(make_world: Any) -> None:
    world: World = await make_world()
    world.disk.full = True
    await world.take_down()
    await until(lambda: world.fake.calls, "the page from memory", 10.0)
    sid = next(iter(world.fake.calls))
    twiml = await world.fake.answer(sid)
    assert "<Gather" in twiml and "sent from memory" in twiml
    status, reply = await world.fake.press(sid, "4")
    assert status == 200 and "acknowledged" in reply
    assert (await world.fake.replay_last())[1] == reply  # a replay changes nothing
    world.clock.advance(STEP_WAIT + 1)  # step 2 would be due: the ack stopped it
    await world.passes(3)
    assert world.calls_to() == [ALICE]
    world.disk.full = False
    await until(lambda: world.count("incidents"), "the incident, once the disk has space")
    await world.committed()
    rows = await world.rows("SELECT state, acked_by FROM incidents")
    assert rows == [("acknowledged", "alice")]
    esc = await world.rows("SELECT state FROM paging_escalations")
    assert esc == [("stopped",)]
    await world.passes(3)
    assert world.calls_to() == [ALICE]


async def test_a_send_whose_bookkeeping_is_refused_is_retried_not_stranded(
    make_world: Any,
) -> None:
    # The page is claimed from the outbox while the disk has space; Twilio hangs; the disk
    # fills; Twilio fails the request. Recording that failure is refused by the store.
    world: World = await make_world()
    world.fake.set_mode("timeout")
    await world.take_down()
    await until(lambda: len(world.fake.requests) >= 1, "the call attempt reaching Twilio")
    assert await world.outbox("sending") == 1
    world.disk.full = True
    world.fake.set_mode("ok")  # the hung request now fails (503): a retryable error
    await until(lambda: world.disk.refused >= 2, "the failure's bookkeeping refused")
    await asyncio.sleep(0.5)
    # The incident was written before the disk filled: the stored path owns it, so the
    # memory pager leaves it alone (no page from memory on top of the outbox's).
    assert world.daemon.memory is not None and not world.daemon.memory.outages
    world.disk.full = False
    # Nothing was sent; the row must go back to the queue and the page out, without a restart.
    await until(lambda: len(world.fake.calls) == 1, "the page after the disk recovered", 20.0)
    await until(lambda: world.outbox("done"), "the outbox row done")
    assert await world.outbox("sending") == 0 and len(world.fake.calls) == 1


async def test_a_stored_escalation_step_due_while_unwritable_goes_out_once(
    make_world: Any,
) -> None:
    # The incident and step 1 were written before the disk filled; step 2 comes due while
    # it is full: it is read from the store and sent from memory, once, and on recovery the
    # stored escalation is moved past it instead of sending it again.
    world: World = await make_world()
    t0 = world.clock.now()
    await world.take_down()
    await until(lambda: world.calls_to() == [ALICE], "step 1 through the outbox")
    await world.committed()
    world.disk.full = True
    await until(lambda: world.disk.refused >= 1, "a refused write")
    world.clock.advance(STEP_WAIT + 1)
    await until(lambda: world.calls_to() == [ALICE, BOB], "step 2 from memory", 10.0)
    await world.passes(4)
    assert world.calls_to() == [ALICE, BOB]
    assert "/twilio/voice/mem." in str(world.fake.creates("call")[1].form.get("Url"))
    world.disk.full = False
    await until(lambda: world.daemon.store is not None and world.daemon.store.writable, "space")

    async def carried() -> bool:
        rows = await world.rows("SELECT step, next_fire_at FROM paging_escalations")
        return rows == [(2, t0 + STEP_WAIT + 3600)]

    await until(carried, "the stored escalation moved past step 2")
    await world.committed()
    pages = await world.rows("SELECT person, status FROM paging_pages ORDER BY created_at")
    assert pages == [("alice", "sent"), ("bob", "sent")]
    await world.passes(3)
    assert world.calls_to() == [ALICE, BOB]  # step 2 not sent again from the store
