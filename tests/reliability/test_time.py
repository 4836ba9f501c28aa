"""Time through the real daemon: wall-clock jumps during an escalation wait, and DST days.

Escalation deadlines are persisted as wall-clock epoch seconds (so a restart neither skips
nor doubles a step); the daemon's loops sleep on the monotonic clock. A wall-clock step
while nocd runs (NTP correcting a wrong clock, an operator's `date -s`) must not shorten or
stretch the wait the on-call person is given: the next step fires after the configured
elapsed time, once. The injected clock's `jump` moves the wall clock alone, as such a step
does (the monotonic clock never sees it).

DST: support hours that open at 09:00 local on a spring-forward or fall-back Sunday open at
09:00 local (not an hour off) for the paging decision and the morning digest, and a failure
at 01:30 on the fall-back day (either occurrence) pages once, its next step an exact elapsed
wait later across the repeated hour. America/New_York and Europe/Berlin.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.reliability.injected import ALICE, BOB, PUBLIC, SID, TOKEN, World, wait_for

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WAIT = 600.0  # step 1 → step 2


def config(
    tmp: Path,
    listen: int,
    pbx: int,
    zone: str,
    on_failure: str = "critical",
    wait: float = WAIT,
) -> str:
    days = ", ".join(f'{d}: ["09:00-18:00"]' for d in ("mon", "tue", "wed", "thu", "fri", "sun"))
    return f"""
daemon:
  listen: 127.0.0.1:{listen}
  public_url: {PUBLIC}
  state_path: {tmp}/nocd.db
  log_format: json
sites:
  main-street: {{name: Main Street, timezone: {zone}}}
support_hours:
  office:
    timezone: {zone}
    weekly: {{{days}}}
checks:
  - name: main-street-pbx
    type: tcp
    target: "127.0.0.1:{pbx}"
    site: main-street
    interval: 1s
    timeout: 1s
    retries: 1
    on_failure: {on_failure}
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_REL_TWILIO_SID}}
    auth_token: ${{NOCD_REL_TWILIO_TOKEN}}
    from_number: "+15550100"
  people:
    alice: {{name: Alice Example, phone: "{ALICE}"}}
    bob: {{name: Bob Example, phone: "{BOB}"}}
  schedules:
    primary:
      timezone: {zone}
      layers:
        - {{rotation: weekly, start: 2026-01-05, handoff: "09:00", participants: [alice]}}
  escalation_policies:
    noc:
      steps:
        - {{schedules: [primary], channels: [voice], wait: {wait:g}s}}
        - {{schedules: [primary], people: [bob], channels: [voice], wait: 10m}}
      repeat: 0
  routing:
    default:
      support_hours: office
      escalation_policy: noc
      digest: true
      digest_to: [bob]
"""


@pytest.fixture(autouse=True)
def _creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_REL_TWILIO_SID", SID)
    monkeypatch.setenv("NOCD_REL_TWILIO_TOKEN", TOKEN)


Start = Callable[..., Awaitable[World]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    worlds: list[World] = []

    async def _start(at: datetime, **kw: Any) -> World:
        zone = str(at.tzinfo)

        def text(port: int, pbx: int) -> str:
            return config(tmp_path, port, pbx, zone, **kw)

        w = await World(tmp_path, text, at).start()
        worlds.append(w)
        return w

    yield _start
    for w in worlds:
        await w.stop()


async def until(pred: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an async predicate (bounded, real time) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def first_step(w: World) -> float:
    """Wait (clock held) for the incident's step 1 to fire; returns the escalation start."""

    async def fired() -> bool:
        esc = await w.escalation()
        return esc is not None and esc[1] == 1

    await until(fired)
    await wait_for(lambda: len(w.calls_to(ALICE)) == 1)
    esc = await w.escalation()
    assert esc is not None
    return float(esc[5])


async def step_two_at(w: World, wall: float) -> None:
    """Move injected time to `wall` and prove step 2 fires exactly then: not a tick before."""
    await w.run(wall - 2.0 - w.clock.now(), step=30)
    assert w.clock.now() == wall - 2.0
    await asyncio.sleep(1.3)  # the paging loop ticks every second
    assert await w.step_fired(1) is None, "step 2 fired early"
    await w.run(2.0)

    async def fired() -> bool:
        return await w.step_fired(1) is not None

    await until(fired)
    got = await w.step_fired(1)
    assert got is not None and got[0] == wall, (got, wall)
    # Step 2 calls the on-call again and bob, at once (nothing holds alice's second call).
    await wait_for(lambda: len(w.calls_to(BOB)) == 1 and len(w.calls_to(ALICE)) == 2)


# ---- wall-clock jumps --------------------------------------------------------------------

SAT_2AM = datetime(2026, 1, 10, 2, 0, tzinfo=NY)


@pytest.mark.parametrize(
    "jumps",
    [(2 * 3600.0,), (-3600.0,), (2 * 3600.0, -2 * 3600.0), (-3600.0, 3 * 3600.0)],
    ids=["forward-2h", "back-1h", "forward-then-back", "back-then-forward"],
)
async def test_wall_clock_jump_during_wait_neither_skips_nor_doubles(
    start: Start, jumps: tuple[float, ...]
) -> None:
    w = await start(SAT_2AM)
    t0 = await first_step(w)
    shift = 0.0
    for jump in jumps:
        await w.run(120)  # two minutes of the wait pass, then the wall clock steps
        w.clock.jump(jump)
        shift += jump
        await asyncio.sleep(1.3)  # let the daemon's loops see the jumped clock
        assert await w.step_fired(1) is None, f"step 2 fired at once after a {jump:+g}s jump"
    # Step 2 comes after exactly the configured elapsed wait: on the jumped wall clock,
    # t0 + shift + WAIT.
    await step_two_at(w, t0 + shift + WAIT)
    # Past the original deadline and well beyond: nothing fires twice, nothing else fires.
    await w.run(max(0.0, -shift) + 15 * 60, step=30)
    await asyncio.sleep(1.3)
    assert len(w.calls_to(ALICE)) == 2 and len(w.calls_to(BOB)) == 1
    steps = await w.rows(
        "SELECT text FROM timeline WHERE kind='page' AND text LIKE 'escalation step%'"
    )
    assert len(steps) == 2, steps
    esc = await w.escalation()
    assert esc is not None and esc[4] == "exhausted" and esc[1] == 2, esc


# ---- DST ----------------------------------------------------------------------------------

# (zone, the DST Sunday, spring forward?)
DST_DAYS = [
    (NY, datetime(2026, 3, 8), "spring"),
    (NY, datetime(2026, 11, 1), "fall"),
    (BERLIN, datetime(2026, 3, 29), "spring"),
    (BERLIN, datetime(2026, 10, 25), "fall"),
]


def local(day: datetime, zone: ZoneInfo, hh: int, mm: int, ss: int = 0, fold: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm, second=ss, tzinfo=zone, fold=fold)


@pytest.mark.parametrize(
    ("zone", "day", "kind"), DST_DAYS, ids=[f"{z}-{k}" for z, _, k in DST_DAYS]
)
@pytest.mark.parametrize("before", [True, False], ids=["08:59", "09:00"])
async def test_support_hours_open_at_nine_local_on_dst_day(
    start: Start, zone: ZoneInfo, day: datetime, kind: str, before: bool
) -> None:
    at = local(day, zone, 8, 59, 40) if before else local(day, zone, 9, 0, 0)
    # The day's offset changed overnight: 09:00 local is an hour away from 09:00 at the
    # previous offset, so an off-by-the-transition calendar would decide the other way.
    midnight = local(day, zone, 0, 0)
    assert at.utcoffset() != midnight.utcoffset()
    w = await start(at)
    assert w.daemon.engine is not None
    await wait_for(lambda: bool(w.daemon.engine and w.daemon.engine._open))
    routing = await _routing(w)
    if before:
        assert routing["in_hours"] is False and routing["page"] is True, routing
        await wait_for(lambda: len(w.calls_to(ALICE)) == 1)
    else:
        assert routing["in_hours"] is True and routing["page"] is False, routing
        await asyncio.sleep(1.5)
        assert not w.fake.calls and not w.fake.messages
    assert await w.rows("SELECT COUNT(*) FROM tickets") == [(1,)]


@pytest.mark.parametrize(
    ("zone", "day", "kind"), DST_DAYS, ids=[f"{z}-{k}" for z, _, k in DST_DAYS]
)
async def test_degraded_overnight_digest_at_nine_local_on_dst_day(
    start: Start, zone: ZoneInfo, day: datetime, kind: str
) -> None:
    w = await start(local(day, zone, 0, 30), on_failure="degraded")
    await wait_for(lambda: bool(w.daemon.engine and w.daemon.engine._open))
    routing = await _routing(w)
    assert routing["in_hours"] is False and routing["digest"] is True, routing
    nine = local(day, zone, 9, 0).timestamp()
    # 08:59:58 local, held: no digest yet (an hour-off calendar would have sent it at 08:00).
    await w.run(nine - 2 - w.clock.now(), step=600)
    await asyncio.sleep(1.3)
    assert not w.fake.messages, "digest before 09:00 local"
    await w.run(2)  # 09:00:00 local, held: the digest goes out now
    await wait_for(lambda: bool(w.sms_to(BOB)))
    assert len(w.sms_to(BOB)) == 1
    assert w.fake.messages[w.sms_to(BOB)[0]].created == nine
    assert not w.fake.calls


@pytest.mark.parametrize(
    ("zone", "day", "fold"),
    [
        (NY, datetime(2026, 11, 1), 0),
        (NY, datetime(2026, 11, 1), 1),
        (BERLIN, datetime(2026, 10, 25), 0),
    ],
    ids=["new-york-first-0130", "new-york-second-0130", "berlin-first-0230"],
)
async def test_failure_in_the_repeated_hour_pages_once(
    start: Start, zone: ZoneInfo, day: datetime, fold: int
) -> None:
    hh = 1 if zone is NY else 2  # the hour that happens twice
    at = local(day, zone, hh, 30, fold=fold)
    wait = 45 * 60.0  # from the first 01:30, step 2 falls after the clocks went back
    w = await start(at, wait=wait)
    t0 = await first_step(w)
    assert t0 == at.timestamp()
    await step_two_at(w, t0 + wait)
    await w.run(3 * 3600, step=120)  # through the repeated hour and out of it
    await asyncio.sleep(1.3)
    assert len(w.calls_to(ALICE)) == 2 and len(w.calls_to(BOB)) == 1
    assert await w.rows("SELECT COUNT(*) FROM incidents") == [(1,)]
    routing = await _routing(w)
    assert routing["in_hours"] is False and routing["page"] is True


async def _routing(w: World) -> dict[str, Any]:
    """The data of the only incident's routing decision (waiting for it to be recorded)."""

    async def recorded() -> bool:
        return bool(await w.rows("SELECT 1 FROM timeline WHERE kind='routing'"))

    await until(recorded)
    rows = await w.rows("SELECT data FROM timeline WHERE kind='routing'")
    assert len(rows) == 1, rows
    return dict(json.loads(rows[0][0]))
