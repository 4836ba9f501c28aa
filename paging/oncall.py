"""CLI helpers: who is on call (`nocd oncall [--at TIME]`) and a real test page (`nocd test-page`).

Contract for the lead:
    describe(paging, at, ical=None) -> list[OnCall]      # OnCall(schedule, person, name, until)
    await test_page(paging, to, channel, notifier, clock, wait_for=120.0, poll=2.0,
                    sleep=asyncio.sleep) -> PageTestResult   # polls the provider's status
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from nocd.clock import Clock
from nocd.delivery import DeliveryError
from paging.config import Channel, PagingConfig, check_e164
from paging.notifiers import Notifier, PageRequest
from paging.schedules import IcalShifts, next_change, on_call
from paging.twiml import say_only

FINAL_OK = {"completed", "delivered", "sent"}
FINAL_BAD = {"no-answer", "busy", "failed", "canceled", "undelivered"}


@dataclass(frozen=True, slots=True)
class OnCall:
    """One schedule's answer: who is on call at the asked time, and until when."""

    schedule: str
    person: str | None
    name: str | None
    until: datetime | None


def describe(
    paging: PagingConfig, at: datetime, ical: Mapping[str, IcalShifts] | None = None
) -> list[OnCall]:
    """Who is on call in every schedule at `at` (aware), and until when."""
    out = []
    for name, sched in sorted(paging.schedules.items()):
        shifts = (ical or {}).get(name)
        who = on_call(sched, at, shifts)
        person = paging.people.get(who) if who else None
        out.append(
            OnCall(name, who, person.name if person else None, next_change(sched, at, shifts))
        )
    return out


@dataclass(frozen=True, slots=True)
class PageTestResult:
    """The outcome of a test page: provider id, last status, and whether it succeeded."""

    ok: bool
    provider_id: str | None
    status: str
    detail: str = ""


async def test_page(
    paging: PagingConfig,
    to: str,
    channel: Channel,
    notifier: Notifier,
    clock: Clock,
    wait_for: float = 120.0,
    poll: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> PageTestResult:
    """Send one real test page (inline TwiML, no webhooks) and poll until it succeeds/fails."""
    to = check_e164(to)
    text = "This is a test page from nocd. No action is needed."
    key = f"test.{int(clock.now())}.{channel}"
    req = PageRequest(
        key, channel, to, text, twiml=say_only(text, 2) if channel == "voice" else None
    )
    try:
        sid = await notifier.send(req)
    except DeliveryError as exc:
        return PageTestResult(False, None, "error", exc.reason)
    deadline = clock.monotonic() + wait_for
    status = "queued"
    while True:
        try:
            status = await notifier.status(channel, sid) or status
        except DeliveryError as exc:
            return PageTestResult(False, sid, "error", exc.reason)
        if status in FINAL_OK and not (channel == "sms" and status == "sent"):
            return PageTestResult(True, sid, status)
        if status in FINAL_BAD:
            return PageTestResult(False, sid, status)
        if clock.monotonic() >= deadline:
            return PageTestResult(False, sid, status, f"no final status within {wait_for:.0f}s")
        await sleep(poll)
