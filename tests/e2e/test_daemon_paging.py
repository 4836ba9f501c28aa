"""Paging through the running daemon: a real probe fails, the daemon pages via the official
Twilio client against the fake, and the fake acknowledges by keypress — injected clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nocd.clock import FakeClock
from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.incidents.model import IncidentState, load
from nocd.sdnotify import Notifier
from tests.fakes.twilio_fake import FakeTwilio
from tests.peers import free_port

NY = ZoneInfo("America/New_York")
SID = "AC" + "0" * 31 + "9"
TOKEN = "daemon-e2e-token-0123456789"
PUBLIC = "https://noc.example.com"
ALICE, BOB = "+15550101", "+15550102"


def closed_port() -> int:
    """A loopback port nothing listens on (connects are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path, listen: int, on_failure: str = "critical") -> str:
    return f"""
daemon:
  listen: 127.0.0.1:{listen}
  public_url: {PUBLIC}
  state_path: {tmp}/nocd.db
  log_format: json
sites:
  main-street: {{name: Main Street, timezone: America/New_York}}
support_hours:
  office:
    timezone: America/New_York
    weekly: {{mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"],
             thu: ["09:00-18:00"], fri: ["09:00-18:00"]}}
checks:
  - name: main-street-pbx
    type: tcp
    target: "127.0.0.1:{closed_port()}"
    site: main-street
    interval: 1s
    timeout: 1s
    retries: 1
    on_failure: {on_failure}
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_E2E_TWILIO_SID}}
    auth_token: ${{NOCD_E2E_TWILIO_TOKEN}}
    from_number: "+15550100"
  people:
    alice: {{name: Alice Example, phone: "{ALICE}"}}
    bob: {{name: Bob Example, phone: "{BOB}"}}
  schedules:
    primary:
      timezone: America/New_York
      layers:
        - {{rotation: weekly, start: 2026-01-05, handoff: "09:00", participants: [alice]}}
  escalation_policies:
    noc:
      steps:
        - {{schedules: [primary], channels: [voice], wait: 10m}}
        - {{people: [bob], channels: [voice], wait: 10m}}
      repeat: 0
  routing:
    default:
      support_hours: office
      escalation_policy: noc
      digest: true
      digest_to: [bob]
"""


Start = Callable[..., Awaitable[tuple[Daemon, FakeTwilio, FakeClock]]]


@pytest.fixture
async def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Start]:
    monkeypatch.setenv("NOCD_E2E_TWILIO_SID", SID)
    monkeypatch.setenv("NOCD_E2E_TWILIO_TOKEN", TOKEN)
    running: list[tuple[Daemon, FakeTwilio]] = []

    async def _start(
        at: datetime, on_failure: str = "critical"
    ) -> tuple[Daemon, FakeTwilio, FakeClock]:
        clock = FakeClock(at.timestamp())
        port = free_port()
        fake = FakeTwilio(
            SID, TOKEN, now=clock.now, public_url=PUBLIC, webhook_base=f"http://127.0.0.1:{port}"
        )
        await fake.__aenter__()
        cfg = load_text(config(tmp_path, port, on_failure), "e2e.yaml")
        daemon = Daemon(
            cfg, clock=clock, notifier=Notifier(environ={}), twilio_base_url=fake.base_url
        )
        await daemon.start()
        running.append((daemon, fake))
        return daemon, fake, clock

    yield _start
    for daemon, fake in running:
        await daemon.stop()
        await fake.__aexit__()


async def wait_for(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `pred` (bounded) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def only_incident(daemon: Daemon) -> object:
    assert daemon.store is not None
    async with daemon.store.reader.execute("SELECT id FROM incidents") as cur:
        rows = await cur.fetchall()
    assert len(rows) == 1, rows
    return await load(daemon.store.reader, rows[0][0])


async def test_critical_at_2am_saturday_pages_on_call_and_keypress_4_acks(start: Start) -> None:
    daemon, fake, clock = await start(datetime(2026, 1, 10, 2, 0, tzinfo=NY))
    await wait_for(lambda: len(fake.creates("call")) == 1)
    call = fake.creates("call")[0]
    assert call.form["To"] == ALICE
    sid = next(iter(fake.calls))
    twiml = await fake.answer(sid)
    assert "Press 4" in twiml or "press 4" in twiml
    status, _ = await fake.press(sid, "4")
    assert status == 200
    inc = await only_incident(daemon)
    assert inc.state is IncidentState.ACKNOWLEDGED  # type: ignore[attr-defined]
    # The next step would fire at +10 min: after an ack it never does.
    clock.advance(11 * 60)
    await asyncio.sleep(2.5)
    assert len(fake.creates("call")) == 1
    # A replayed keypress webhook changes nothing.
    status, _ = await fake.replay_last()
    assert len(fake.creates("call")) == 1


async def test_no_ack_escalates_to_the_next_step_at_the_configured_time(start: Start) -> None:
    _daemon, fake, clock = await start(datetime(2026, 1, 10, 2, 0, tzinfo=NY))
    await wait_for(lambda: len(fake.creates("call")) == 1)
    clock.advance(9 * 60 + 50)  # ten seconds before the step's wait ends
    await asyncio.sleep(2.5)
    assert len(fake.creates("call")) == 1
    clock.advance(15)
    await wait_for(lambda: len(fake.creates("call")) == 2)
    assert fake.creates("call")[1].form["To"] == BOB


async def test_degraded_at_2am_pages_no_one_and_goes_into_the_9am_digest(start: Start) -> None:
    daemon, fake, clock = await start(datetime(2026, 1, 12, 2, 0, tzinfo=NY), "degraded")
    assert daemon.store is not None
    await wait_for(lambda: daemon.engine is not None and bool(daemon.engine._open))
    await asyncio.sleep(2.0)
    assert fake.creates("call") == [] and fake.creates("message") == []
    clock.set(datetime(2026, 1, 12, 9, 0, 30, tzinfo=NY))
    await wait_for(lambda: len(fake.creates("message")) == 1)
    sms = fake.creates("message")[0]
    assert sms.form["To"] == BOB
    inc = await only_incident(daemon)
    assert inc.code in sms.form["Body"]  # type: ignore[attr-defined]
    assert fake.creates("call") == []


async def test_critical_at_11am_weekday_opens_a_ticket_and_pages_no_one(start: Start) -> None:
    daemon, fake, _clock = await start(datetime(2026, 1, 13, 11, 0, tzinfo=NY))
    assert daemon.store is not None
    await wait_for(lambda: daemon.engine is not None and bool(daemon.engine._open))
    await asyncio.sleep(2.0)
    async with daemon.store.reader.execute("SELECT COUNT(*) FROM tickets") as cur:
        row = await cur.fetchone()
    assert row is not None and row[0] == 1
    assert fake.creates("call") == [] and fake.creates("message") == []
