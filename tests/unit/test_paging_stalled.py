"""Channel fallback for a page the provider keeps refusing to create (one API down)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nocd.calendar_config import CalendarConfig
from nocd.clock import FakeClock
from nocd.delivery import DeliveryError
from nocd.incidents.model import Incident
from paging import pager as pager_module
from paging.config import Channel, PagingConfig
from paging.notifiers import DryRunNotifier, PageRequest
from tests.fakes.paging_harness import Harness

NY = ZoneInfo("America/New_York")
SAT_2AM = datetime(2026, 1, 10, 2, 0, tzinfo=NY)
CALS = {
    "office": CalendarConfig.model_validate(
        {"timezone": "America/New_York", "weekly": {"mon": ["09:00-18:00"]}}
    )
}
ALICE, BOB = "+15550101", "+15550102"


class PartialOutage(DryRunNotifier):
    """Sends like the dry run, except that the APIs in `down` answer only retryable errors."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[Channel] = set()
        self.attempts: list[tuple[float, Channel]] = []  # requests: sends and listings
        self.now: Callable[[], float] = lambda: 0.0

    async def send(self, page: PageRequest) -> str:
        """Fail while the page's API is down, else record it as sent."""
        self.attempts.append((self.now(), page.channel))
        if page.channel in self.down:
            raise DeliveryError(f"{page.channel} API: HTTP 500", retryable=True)
        return await super().send(page)

    async def find_sent(
        self, page: PageRequest, since: float, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """Listing fails like creating while the API is down (a retry lists first)."""
        self.attempts.append((self.now(), page.channel))
        if page.channel in self.down:
            raise DeliveryError(f"{page.channel} API: HTTP 500", retryable=True)
        return await super().find_sent(page, since, exclude)

    def to(self, number: str, channel: Channel) -> list[PageRequest]:
        """Pages that got through to `number` on `channel`."""
        return [p for p in self.sent if p.to == number and p.channel == channel]


def config(channels: list[str], **over: Any) -> PagingConfig:
    raw: dict[str, Any] = {
        "people": {
            "alice": {"name": "Alice Example", "phone": ALICE},
            "bob": {"name": "Bob Example", "phone": BOB},
        },
        "escalation_policies": {
            "noc": {
                "steps": [
                    {"people": ["alice"], "channels": channels, "wait": "30m"},
                    {"people": ["bob"], "channels": ["sms"], "wait": "30m"},
                ]
            }
        },
        "routing": {"default": {"support_hours": "office", "escalation_policy": "noc"}},
    }
    raw.update(over)
    return PagingConfig.model_validate(raw)


Make = Callable[..., Awaitable[tuple[Harness, PartialOutage]]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[Harness] = []

    async def _make(channels: list[str], **over: Any) -> tuple[Harness, PartialOutage]:
        clock = FakeClock(SAT_2AM.timestamp())
        notifier = PartialOutage()
        notifier.now = clock.now
        h = await Harness(tmp_path, config(channels, **over), CALS, clock, None, notifier).start()
        made.append(h)
        return h, notifier

    yield _make
    for h in made:
        await h.close()


async def fallback_events(h: Harness, inc: Incident) -> list[str]:
    return [e.text for e in await h.timeline(inc) if "still not placed" in e.text]


async def page_rows(h: Harness) -> list[tuple[str, str, str]]:
    async with h.store.reader.execute(
        "SELECT key, channel, status FROM paging_pages ORDER BY created_at, key"
    ) as cur:
        return [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]


async def test_voice_down_sms_up_texts_once_at_the_threshold_and_keeps_calling(
    make: Make,
) -> None:
    h, n = await make(["voice"])
    n.down = {"voice"}
    inc = await h.open_incident()
    await h.tick()
    t0 = h.clock.now()
    assert n.attempts == [(t0, "voice")]  # the first attempt, at once
    await h.tick(58)
    assert not n.sent  # within the threshold: only the call is retried
    await h.tick(4)
    [sms] = n.to(ALICE, "sms")
    when = [t for t, ch in n.attempts if ch == "sms"]
    assert len(when) == 1 and t0 + 60 <= when[0] <= t0 + 61, (when, t0)
    assert sms.key == f"page.{inc.id}.0.0.alice.voice.fb"
    [why] = await fallback_events(h, inc)
    assert "call to alice still not placed 60s after the first attempt" in why
    assert "HTTP 500" in why and "keeps retrying" in why

    # Voice stays down: the call keeps being retried (spaced), the SMS is never repeated.
    before = sum(1 for _, ch in n.attempts if ch == "voice")
    await h.tick(600, step=5)
    assert sum(1 for _, ch in n.attempts if ch == "voice") > before
    assert len(n.to(ALICE, "sms")) == 1

    # Voice recovers: the call goes through; no second SMS.
    n.down.clear()
    await h.tick(300, step=5)
    [call] = n.to(ALICE, "voice")
    assert len(n.to(ALICE, "sms")) == 1

    # The call goes unanswered: the unanswered-call fallback finds the SMS already sent for
    # this step, so it adds none; the escalation moves on to bob at once.
    assert await h.pager.on_status(call.key, "no-answer")
    await h.tick(2)
    assert len(n.to(ALICE, "sms")) == 1
    assert len(n.to(BOB, "sms")) == 1
    assert [k for k, _, _ in await page_rows(h)] == [
        f"page.{inc.id}.0.0.alice.voice",
        f"page.{inc.id}.0.0.alice.voice.fb",
        f"page.{inc.id}.1.0.bob.sms",
    ]
    assert len(await fallback_events(h, inc)) == 1


async def test_sms_down_voice_up_sms_primary_page_calls_once(make: Make) -> None:
    h, n = await make(["sms"])
    n.down = {"sms"}
    inc = await h.open_incident()
    await h.tick(59)
    assert not n.sent
    await h.tick(2)
    [call] = n.to(ALICE, "voice")
    assert call.key == f"page.{inc.id}.0.0.alice.sms.fb"
    assert "SMS to alice still not placed" in (await fallback_events(h, inc))[0]
    await h.tick(300, step=5)
    n.down.clear()
    await h.tick(300, step=5)
    [sms] = n.to(ALICE, "sms")
    # The SMS then fails to deliver: its fallback is the call already made, not a second one.
    assert await h.pager.on_status(sms.key, "undelivered")
    await h.tick(5)
    assert len(n.to(ALICE, "voice")) == 1


async def test_threshold_is_configurable_and_counts_from_the_first_attempt(make: Make) -> None:
    h, n = await make(["voice"], channel_fallback_after="2m", rate_limits={"voice": 1})
    await h.open_incident()
    await h.tick()
    assert len(n.to(ALICE, "voice")) == 1
    # Voice goes down; a second incident's call is held by the voice cap (1 per 15 min), so
    # its first attempt, from which the threshold counts, comes much later than the incident.
    n.down = {"voice"}
    h.clock.advance(10)
    await h.open_incident()
    await h.tick(300, step=5)
    assert not n.to(ALICE, "sms") and not [a for a in n.attempts if a[1] == "voice"][1:]
    await h.tick(600, step=5)
    first = [t for t, ch in n.attempts if ch == "voice"][1]
    await h.tick(first + 119 - h.clock.now())
    assert not n.to(ALICE, "sms")
    await h.tick(2)
    assert len(n.to(ALICE, "sms")) == 1
    assert first + 120 <= next(t for t, ch in n.attempts if ch == "sms") <= first + 121


async def test_no_fallback_when_channel_fallback_is_off(make: Make) -> None:
    h, n = await make(["voice"], channel_fallback=False)
    n.down = {"voice"}
    inc = await h.open_incident()
    await h.tick(600, step=5)
    assert not n.sent and not await fallback_events(h, inc)


async def test_step_already_on_both_channels_adds_nothing(make: Make) -> None:
    h, n = await make(["voice", "sms"])
    n.down = {"voice"}
    inc = await h.open_incident()
    await h.tick(600, step=5)
    assert len(n.to(ALICE, "sms")) == 1  # the step's own SMS
    assert not [k for k, _, _ in await page_rows(h) if k.endswith(".fb")]
    assert not await fallback_events(h, inc)


async def test_acknowledged_before_the_threshold_no_fallback(make: Make) -> None:
    h, n = await make(["voice"])
    n.down = {"voice"}
    inc = await h.open_incident()
    await h.tick(30)
    await h.acker.ack(inc.code, "alice", "api")
    await h.tick(300, step=5)
    assert not n.sent and not await fallback_events(h, inc)


async def test_restarts_keep_the_timing_and_never_send_twice(make: Make) -> None:
    h, n = await make(["voice"])
    n.down = {"voice"}
    inc = await h.open_incident()
    await h.tick(30)
    await _restart(h)  # the first attempt's time is stored: no new 60 s after a restart
    await h.tick(31)
    assert len(n.to(ALICE, "sms")) == 1
    await _restart(h)  # the pager forgets what it handled; the stored fallback page remains
    await h.tick(120, step=5)
    assert len(n.to(ALICE, "sms")) == 1
    assert len(await fallback_events(h, inc)) == 1
    assert sum(1 for k, _, _ in await page_rows(h) if k.endswith(".fb")) == 1


async def test_a_rolled_back_fallback_is_recorded_on_the_next_tick(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, n = await make(["voice"])
    n.down = {"voice"}
    await h.open_incident()
    await h.tick(59)
    real = pager_module.fall_back_stalled

    async def fails_after(*args: Any) -> tuple[int, frozenset[str]]:
        made, _ = await real(*args)
        assert made == 1  # recorded, then lost with the transaction
        raise OSError("disk I/O error")  # the paging loop's transaction rolls back

    monkeypatch.setattr(pager_module, "fall_back_stalled", fails_after)
    h.clock.advance(2)
    with pytest.raises(OSError):
        await h.pager.run_due(h.clock.now())
    assert not [k for k, _, _ in await page_rows(h) if k.endswith(".fb")]
    monkeypatch.setattr(pager_module, "fall_back_stalled", real)
    await h.tick()  # not remembered as handled: recorded now
    assert len(n.to(ALICE, "sms")) == 1


async def _restart(h: Harness) -> None:
    """A daemon restart over the same database, keeping the outage notifier."""
    await h.close()
    await h.start()
    await h.worker.recover()
