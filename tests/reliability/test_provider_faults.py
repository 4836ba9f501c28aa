"""Provider faults through the real daemon: Twilio and the ticket sinks failing for 10 minutes.

The daemon runs in-process on an injected clock (tests/reliability/injected.py). A real probe
fails at 02:00 on a Saturday (outside support hours), so a critical incident pages alice by
voice; bob is step 2, five minutes later. The Twilio fake answers 500, 503, 429 with a
Retry-After, hangs past the client timeout, or resets connections (before, or after creating
the call: an in-doubt send) for the first 10 injected minutes. Asserted: each page reaches
the fake exactly once (calls counted at the fake), soon after recovery; step 2 fires at
exactly its injected time despite the outage; the channel fallback (SMS after an unanswered
call) engages as configured; retries are bounded and spaced (requests counted at the fake).

The ticket sinks (webhook receiver, Jira fake, aiosmtpd) fail with errors or time out for 10
minutes: the ticket reaches each exactly once after recovery.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.fakes.jira_fake import JiraFake
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.tickets_world import MailServer
from tests.reliability.injected import ALICE, BOB, PUBLIC, SID, TOKEN, World, wait_for

NY = ZoneInfo("America/New_York")
SAT_2AM = datetime(2026, 1, 10, 2, 0, tzinfo=NY)
TUE_11AM = datetime(2026, 1, 13, 11, 0, tzinfo=NY)
OUTAGE = 600.0  # ten injected minutes
STEP_WAIT = 300.0  # step 1 → step 2
CLIENT_TIMEOUT = 0.5  # Twilio client and sinks give up on a hung request after this (real) time
MAX_BACKOFF = 300.0  # nocd.outbox.backoff's cap: the longest a retry waits
HOOK_KEY, JIRA_TOKEN = "reliability-hook-key-77", "reliability-jira-token-42"


def config(tmp: Path, listen: int, pbx: int, extra: str = "") -> str:
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
    target: "127.0.0.1:{pbx}"
    site: main-street
    interval: 1s
    timeout: 1s
    retries: 1
    on_failure: critical
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_REL_TWILIO_SID}}
    auth_token: ${{NOCD_REL_TWILIO_TOKEN}}
    from_number: "+15550100"
    timeout: {CLIENT_TIMEOUT:g}s
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
        - {{schedules: [primary], channels: [voice], wait: {STEP_WAIT:g}s}}
        - {{people: [bob], channels: [voice], wait: 10m}}
      repeat: 0
  channel_fallback: true
  routing:
    default:
      support_hours: office
      escalation_policy: noc
{extra}"""


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_REL_TWILIO_SID", SID)
    monkeypatch.setenv("NOCD_REL_TWILIO_TOKEN", TOKEN)
    monkeypatch.setenv("NOCD_REL_HOOK_KEY", HOOK_KEY)
    monkeypatch.setenv("NOCD_REL_JIRA_TOKEN", JIRA_TOKEN)


Start = Callable[..., Awaitable[World]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    worlds: list[World] = []

    async def _start(at: datetime, extra: str = "") -> World:
        w = await World(tmp_path, lambda port, pbx: config(tmp_path, port, pbx, extra), at).start()
        worlds.append(w)
        return w

    yield _start
    for w in worlds:
        await w.stop()


# ---- Twilio ------------------------------------------------------------------------------

MODES = ["500", "503", "429", "timeout", "reset", "reset_after_create"]


@pytest.mark.parametrize("mode", MODES)
async def test_twilio_down_for_ten_minutes_pages_once_on_schedule(start: Start, mode: str) -> None:
    w = await start(SAT_2AM)
    if mode == "429":
        w.fake.retry_after = "120"
    w.fake.set_mode(mode)
    # The probe fails, the incident opens and step 1 fires while the clock stands still.
    esc: tuple[Any, ...] | None = None

    async def _fired() -> bool:
        nonlocal esc
        esc = await w.escalation()
        return esc is not None and esc[1] == 1

    await _until(_fired)
    assert esc is not None
    inc, t0 = int(esc[0]), float(esc[5])
    assert float(esc[3]) == t0 + STEP_WAIT
    await wait_for(lambda: bool(w.requests_for(ALICE)))  # the first attempt is made at once

    # Step 2 is due at t0 + 5 min: not a tick early, and at exactly that time though Twilio
    # is still failing (the clock is held there until the daemon's loop fires it).
    await w.run(STEP_WAIT - 2.0)
    await asyncio.sleep(1.3)  # more than the paging loop's period
    assert await w.step_fired(1) is None
    await w.run(2.0)
    await _until(lambda: _truthy(w.step_fired(1)))
    fired = await w.step_fired(1)
    assert fired is not None and fired[0] == t0 + STEP_WAIT, (fired, t0)
    assert "bob by voice" in fired[1]

    await w.run(OUTAGE - STEP_WAIT)
    during = {n: w.requests_for(n) for n in (ALICE, BOB)}
    if mode == "reset_after_create":
        assert len(w.calls_to(ALICE)) == 1  # the first attempt created it; never again
    else:
        assert not w.fake.calls and not w.fake.messages
    for n, times in during.items():
        # Bounded and spaced: a storm would be hundreds (one per poll), not a handful.
        # aiohttp re-sends an idempotent GET at once when a reused connection was reset:
        # at most two requests per instant, and retries spaced by the backoff.
        assert all(times.count(t) <= (2 if mode == "reset" else 1) for t in times), times
        gaps = [b - a for a, b in pairwise(sorted(set(times)))]
        assert 1 <= len(set(times)) <= 25, (n, times)
        if mode == "429":
            assert all(g >= 120.0 for g in gaps), (n, gaps)  # Retry-After honoured
        elif mode != "reset_after_create":
            assert all(g >= 2.0 for g in gaps), (n, gaps)

    # Twilio recovers: each page goes out once, within the longest backoff.
    w.fake.set_mode("ok")
    recovered = w.clock.now()
    waited = await w.run(
        MAX_BACKOFF + 10, until=lambda: bool(w.calls_to(ALICE) and w.calls_to(BOB))
    )
    assert w.calls_to(ALICE) and w.calls_to(BOB), (w.fake.requests[-3:], waited)
    assert waited <= MAX_BACKOFF + 2
    await _until(lambda: _sent(w, inc))
    assert len(w.calls_to(ALICE)) == 1 and len(w.calls_to(BOB)) == 1

    # Alice's call goes unanswered: the configured channel fallback texts her, once.
    alice = w.calls_to(ALICE)[0]
    status, _ = await w.fake.call_status(alice, "no-answer")
    assert status == 200
    await w.run(60, until=lambda: bool(w.sms_to(ALICE)))
    assert len(w.sms_to(ALICE)) == 1
    assert str(w.fake.messages[w.sms_to(ALICE)[0]].params["Body"])

    # Long after: nothing more was sent (no late duplicate of any retried page).
    await w.run(20 * 60, step=30)
    await asyncio.sleep(1.2)
    assert len(w.calls_to(ALICE)) == 1 and len(w.calls_to(BOB)) == 1
    assert len(w.sms_to(ALICE)) == 1 and not w.sms_to(BOB)
    outbox = await w.rows("SELECT key, state, attempts FROM outbox WHERE kind='notify'")
    assert len(outbox) == 3, outbox  # alice voice, bob voice, alice's SMS fallback
    assert all(s == "done" for _, s, _ in outbox), outbox
    assert max(a for _, _, a in outbox) <= 26
    counts = {n: len(t) for n, t in during.items()}
    print(
        f"\n{mode}: requests during the outage {counts}, "
        f"outbox attempts {sorted(a for _, _, a in outbox)}, "
        f"delivered {waited:.0f}s after recovery at {recovered:.0f}"
    )


@pytest.mark.xfail(
    strict=True,
    reason="not built: the channel fallback engages on a permanent failure or a failed call, "
    "not while calls cannot be placed at all (retryable errors); see RESULTS.md",
)
async def test_voice_api_down_sms_up_falls_back_to_sms_within_the_step(start: Start) -> None:
    """A partial outage (Twilio's voice API failing, SMS working) should still reach the
    on-call person on the other configured channel before the step's wait is over."""
    w = await start(SAT_2AM)
    w.fake.mode_kind = "call"
    w.fake.set_mode("500")
    await wait_for(lambda: bool(w.requests_for(ALICE)))
    await w.run(STEP_WAIT - 2.0, until=lambda: bool(w.sms_to(ALICE)))
    assert not w.fake.calls  # the voice API is down all along
    assert w.sms_to(ALICE), "alice was not reached on any channel during step 1"


async def _until(pred: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an async predicate (bounded, real time) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def _truthy(aw: Awaitable[object]) -> bool:
    return bool(await aw)


async def _sent(w: World, inc: int) -> bool:
    rows = await w.rows(
        "SELECT COUNT(*) FROM paging_pages p JOIN paging_page_incidents x ON x.key = p.key "
        "WHERE x.incident_id=? AND p.status='sent'",
        inc,
    )
    return int(rows[0][0]) == 2


# ---- ticket sinks -------------------------------------------------------------------------


@dataclass
class FaultyMail(MailServer):
    """aiosmtpd that can refuse every message with a temporary reply, or stall at DATA."""

    refuse_all: str | None = None
    hang: bool = False
    attempts: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Count, stall while `hang`, refuse while `refuse_all`, else store."""
        self.attempts += 1
        while self.hang:  # cleared by the test
            await asyncio.sleep(0.05)
        if self.refuse_all:
            return self.refuse_all
        return await super().handle_DATA(server, session, envelope)


def sinks(smtp: int, hook: str, jira: str, timeout: float = CLIENT_TIMEOUT) -> str:
    return f"""
tickets:
  sinks:
    mail:
      type: email
      host: 127.0.0.1
      port: {smtp}
      security: none
      from_address: noc@example.com
      to: [helpdesk@example.com]
      timeout: {timeout:g}s
    hook:
      type: webhook
      url: {hook}
      secret: ${{NOCD_REL_HOOK_KEY}}
      timeout: {timeout:g}s
    jira:
      type: jira
      base_url: {jira}
      email: noc@example.com
      api_token: ${{NOCD_REL_JIRA_TOKEN}}
      project: NOC
      timeout: {timeout:g}s
"""


@pytest.mark.parametrize("fault", ["error", "timeout"])
async def test_ticket_sinks_down_for_ten_minutes_create_once(start: Start, fault: str) -> None:
    mail = FaultyMail()
    hook = WebhookReceiver(HOOK_KEY.encode())
    jira = JiraFake("noc@example.com", JIRA_TOKEN)
    smtp = await mail.start()
    try:
        if fault == "error":
            mail.refuse_all = "451 4.3.0 Mail system temporarily unavailable"
            hook.fail_all = (500, None)
            jira.fail_all = (500, None)
        else:
            mail.hang = hook.hang = jira.hang = True
        w = await start(TUE_11AM, sinks(smtp, await hook.start(), await jira.start()))
        # In support hours: a ticket, no page. Each sink's create is attempted at once.
        await wait_for(lambda: bool(mail.attempts and hook.attempts and jira.requests))
        await w.run(OUTAGE)
        tried = {"mail": mail.attempts, "hook": hook.attempts, "jira": len(jira.requests)}
        assert not mail.messages and not hook.accepted and not jira.issues
        assert all(1 <= n <= 25 for n in tried.values()), tried  # bounded, not a storm

        mail.refuse_all, hook.fail_all, jira.fail_all = None, None, None
        mail.hang = hook.hang = jira.hang = False
        waited = await w.run(
            MAX_BACKOFF + 10, until=lambda: bool(mail.messages and hook.accepted and jira.issues)
        )
        assert mail.messages and hook.accepted and jira.issues, waited
        await w.run(20 * 60, step=30)  # long after: no late duplicate
        await asyncio.sleep(1.2)

        assert len(jira.issues) == 1, list(jira.issues)
        creates = [r for r in hook.accepted if r.event == "create"]
        assert len(creates) == 1, [(r.key, r.event) for r in hook.accepted]
        # SMTP cannot tell a lost reply from a lost message: a resend keeps its Message-ID,
        # which is what a help desk deduplicates on. One distinct message, then.
        ids = {m["Message-ID"] for m in mail.messages}
        assert len(ids) == 1, ids
        rows = await w.rows("SELECT kind, state, attempts FROM outbox WHERE kind LIKE 'ticket:%'")
        assert sorted(k for k, _, _ in rows) == ["ticket:hook", "ticket:jira", "ticket:mail"]
        assert all(s == "done" for _, s, _ in rows), rows
        assert await w.rows("SELECT COUNT(*) FROM tickets") == [(1,)]
        assert not w.fake.requests  # in support hours nobody is paged
        print(
            f"\n{fault}: attempts during the outage {tried}, delivered {waited:.0f}s after "
            f"recovery; repeats the receivers dropped: webhook {hook.duplicates}, "
            f"mail {len(mail.messages) - 1}"
        )
    finally:
        mail.hang = hook.hang = jira.hang = False
        await hook.stop()
        await jira.stop()
        await mail.stop()
