"""Provider faults through the real daemon: Twilio and the ticket sinks failing for 10 minutes.

The daemon runs in-process on an injected clock (tests/reliability/injected.py). A real probe
fails at 02:00 on a Saturday (outside support hours), so a critical incident pages alice by
voice; bob is step 2, five minutes later. The Twilio fake answers 500, 503, 429 with a
Retry-After, hangs past the client timeout, or resets connections (before, or after creating
the call: an in-doubt send) for the first 10 injected minutes. Asserted: each page reaches
the fake exactly once (calls counted at the fake), soon after recovery; step 2 fires at
exactly its injected time despite the outage; a call still not placed a minute after its
first attempt gets its SMS fallback, once (sent when SMS works), and an unanswered call
then adds no second one; retries are bounded and spaced (requests counted at the fake).
A partial outage (voice API down, SMS up) texts the on-call person a minute after the call's
first attempt, within the step.

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
    # In doubt, the call is found by the reconcile list (lists work in that mode) and is
    # sent; otherwise each call is still not placed a minute on: its SMS fallback is tried.
    stalls = mode != "reset_after_create"
    if not stalls:
        assert len(w.calls_to(ALICE)) == 1  # the first attempt created it; never again
        assert not _api_times(w, ALICE, "Messages") and not _api_times(w, BOB, "Messages")
    else:
        assert not w.fake.calls and not w.fake.messages
    for n, times in during.items():
        assert 1 <= len(set(times)) <= 50, (n, times)  # calls and SMS together
        for api in ("Calls", "Messages") if stalls else ("Calls",):
            # Bounded and spaced: a storm would be hundreds (one per poll), not a handful.
            # aiohttp re-sends an idempotent GET at once when a reused connection was reset:
            # at most two requests per instant, and retries spaced by the backoff.
            times = _api_times(w, n, api)
            assert all(times.count(t) <= (2 if mode == "reset" else 1) for t in times), times
            gaps = [b - a for a, b in pairwise(sorted(set(times)))]
            assert 1 <= len(set(times)) <= 25, (n, api, times)
            if mode == "429":
                assert all(g >= 120.0 for g in gaps), (n, gaps)  # Retry-After honoured
            elif stalls:
                assert all(g >= 2.0 for g in gaps), (n, gaps)
    fallback_after = {}
    if stalls:
        for n in (ALICE, BOB):
            # The SMS fallback is tried no sooner than a minute after the call's first
            # attempt, and (asserted above) within the outage. How much later depends on
            # this test's pacing: the paging loop runs once per real second while injected
            # time moves ~100x faster (the exact 60 s is measured in the partial outage).
            lag = _api_times(w, n, "Messages")[0] - _api_times(w, n, "Calls")[0]
            assert lag >= 60.0, (n, lag)
            fallback_after[n] = lag

    # Twilio recovers: each page goes out once, within the longest backoff.
    w.fake.set_mode("ok")
    recovered = w.clock.now()

    def _all_out() -> bool:
        calls = bool(w.calls_to(ALICE) and w.calls_to(BOB))
        return calls and (not stalls or bool(w.sms_to(ALICE) and w.sms_to(BOB)))

    waited = await w.run(MAX_BACKOFF + 10, until=_all_out)
    assert _all_out(), (w.fake.requests[-3:], waited)
    assert waited <= MAX_BACKOFF + 2
    await _until(lambda: _sent(w, inc))
    assert len(w.calls_to(ALICE)) == 1 and len(w.calls_to(BOB)) == 1
    assert len(w.sms_to(ALICE)) == len(w.sms_to(BOB)) == (1 if stalls else 0)

    # Alice's call goes unanswered: the configured channel fallback texts her, once: the
    # SMS already sent for this step (stalled call) counts, no second one is added.
    alice = w.calls_to(ALICE)[0]
    status, _ = await w.fake.call_status(alice, "no-answer")
    assert status == 200
    await w.run(60, until=lambda: bool(w.sms_to(ALICE)))
    await w.run(10)
    assert len(w.sms_to(ALICE)) == 1
    assert str(w.fake.messages[w.sms_to(ALICE)[0]].params["Body"])

    # Long after: nothing more was sent (no late duplicate of any retried page).
    await w.run(20 * 60, step=30)
    await asyncio.sleep(1.2)
    assert len(w.calls_to(ALICE)) == 1 and len(w.calls_to(BOB)) == 1
    assert len(w.sms_to(ALICE)) == 1 and len(w.sms_to(BOB)) == (1 if stalls else 0)
    outbox = await w.rows("SELECT key, state, attempts FROM outbox WHERE kind='notify'")
    # alice voice, bob voice, and the SMS fallback of each stalled call (else alice's, after
    # her unanswered call).
    assert len(outbox) == (4 if stalls else 3), outbox
    assert sum(k.endswith(".fb") for k, _, _ in outbox) == (2 if stalls else 1), outbox
    assert all(s == "done" for _, s, _ in outbox), outbox
    assert max(a for _, _, a in outbox) <= 26
    counts = {n: len(t) for n, t in during.items()}
    print(
        f"\n{mode}: requests during the outage {counts}, "
        f"outbox attempts {sorted(a for _, _, a in outbox)}, "
        f"SMS fallback first tried {fallback_after} s after each call's first attempt, "
        f"delivered {waited:.0f}s after recovery at {recovered:.0f}"
    )


async def test_voice_api_down_sms_up_falls_back_to_sms_within_the_step(start: Start) -> None:
    """A partial outage (Twilio's voice API failing, SMS working) reaches the on-call person
    by SMS `channel_fallback_after` (60 s) after the call's first attempt, once, while the
    call keeps retrying; when voice recovers the call goes out, and its no-answer adds no
    second SMS for the step."""
    w = await start(SAT_2AM)
    w.fake.mode_kind = "call"
    w.fake.set_mode("500")
    await wait_for(lambda: bool(w.requests_for(ALICE)))
    first = w.requests_for(ALICE)[0]
    # Not a tick early: the clock is held at +58 s for more than the paging loop's period.
    await w.run(58.0)
    await asyncio.sleep(1.3)
    assert not w.sms_to(ALICE)
    await w.run(2.0)  # +60 s, then held there until the paging loop acts
    await wait_for(lambda: bool(w.sms_to(ALICE)))
    [sms] = w.sms_to(ALICE)
    texted = w.fake.messages[sms].created
    assert texted == first + 60.0, (texted, first)
    assert not w.fake.calls  # the voice API is down all along
    body = str(w.fake.messages[sms].params["Body"])
    assert "Reply 4" in body  # the page's SMS text, with the ack instructions

    # The call keeps being retried; the SMS is not repeated.
    before = len(_api_times(w, ALICE, "Calls"))
    await w.run(STEP_WAIT - 62.0 - 2.0)
    assert len(_api_times(w, ALICE, "Calls")) > before
    assert len(w.sms_to(ALICE)) == 1 and not w.fake.calls

    # Voice recovers: the call goes through; alice does not answer.
    w.fake.set_mode("ok")
    await w.run(MAX_BACKOFF + 10, until=lambda: bool(w.calls_to(ALICE)))
    [call] = w.calls_to(ALICE)
    status, _ = await w.fake.call_status(call, "no-answer")
    assert status == 200
    await w.run(60)
    await asyncio.sleep(1.2)
    await w.run(2)
    assert len(w.sms_to(ALICE)) == 1 and len(w.calls_to(ALICE)) == 1
    rows = await w.rows("SELECT key, channel, status FROM paging_pages WHERE person='alice'")
    assert sorted((k.rsplit(".", 1)[-1], ch) for k, ch, _ in rows) == [
        ("fb", "sms"),
        ("voice", "voice"),
    ], rows
    why = await w.rows("SELECT text FROM timeline WHERE text LIKE '%still not placed%'")
    assert len(why) == 1 and "60s after the first attempt" in why[0][0], why
    print(
        f"\npartial outage: alice texted {texted - first:.0f}s after the call's first attempt "
        f"({len(_api_times(w, ALICE, 'Calls'))} call requests in all, 1 SMS)"
    )


async def _until(pred: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an async predicate (bounded, real time) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _api_times(w: World, number: str, api: str) -> list[float]:
    """Injected times of the REST requests (create or reconcile) about `number` to one API
    ("Calls" or "Messages")."""
    return [
        r.at
        for r in w.fake.requests
        if f"/{api}" in r.path and (r.form.get("To") == number or r.query.get("To") == number)
    ]


async def _truthy(aw: Awaitable[object]) -> bool:
    return bool(await aw)


async def _sent(w: World, inc: int) -> bool:
    rows = await w.rows(
        "SELECT COUNT(*) FROM paging_pages p JOIN paging_page_incidents x ON x.key = p.key "
        "WHERE x.incident_id=? AND p.status='sent' AND p.channel='voice'",
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
