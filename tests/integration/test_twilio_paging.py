"""Paging end to end at the paging level: store, pager, outbox, official twilio client → fake.

The official `twilio` client talks to tests/fakes/twilio_fake.py on 127.0.0.1; the fake
drives nocd's webhooks (served by a real aiohttp app) with signatures from RequestValidator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nocd.calendar_config import CalendarConfig
from nocd.clock import FakeClock
from nocd.incidents.model import IncidentState
from nocd.model import Severity
from paging.config import PagingConfig
from tests.fakes.paging_harness import PUBLIC_URL, Harness
from tests.fakes.twilio_fake import FakeTwilio

NY = ZoneInfo("America/New_York")
SID = "AC" + "0" * 31 + "7"
TOKEN = "fake-auth-token-0123456789"
ALICE, BOB, CAROL = "+15550101", "+15550102", "+15550103"
SAT_2AM = datetime(2026, 1, 10, 2, 0, tzinfo=NY)
MON_11AM = datetime(2026, 1, 12, 11, 0, tzinfo=NY)
CALS = {
    "office": CalendarConfig.model_validate(
        {
            "timezone": "America/New_York",
            "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": [{"country": "US"}],
        }
    )
}


def paging_config(**over: Any) -> PagingConfig:
    """Alice is on call (primary), Bob is step 2, Carol is the fallback."""
    raw: dict[str, Any] = {
        "provider": {
            "type": "twilio",
            "account_sid": "${NOCD_TEST_TWILIO_SID}",
            "auth_token": "${NOCD_TEST_TWILIO_TOKEN}",
            "from_number": "+15550100",
        },
        "people": {
            "alice": {"name": "Alice Example", "phone": ALICE},
            "bob": {"name": "Bob Example", "phone": BOB},
            "carol": {"name": "Carol Example", "phone": CAROL},
        },
        "schedules": {
            "primary": {
                "timezone": "America/New_York",
                "layers": [
                    {
                        "rotation": "weekly",
                        "start": "2026-01-05",
                        "handoff": "09:00",
                        "participants": ["alice"],
                    }
                ],
            }
        },
        "escalation_policies": {
            "default": {
                "steps": [
                    {"schedules": ["primary"], "channels": ["voice"], "wait": "5m"},
                    {"people": ["bob"], "channels": ["voice", "sms"], "wait": "5m"},
                ],
                "repeat": 1,
                "fallback": {"people": ["carol"], "channels": ["sms"]},
            }
        },
        "routing": {
            "default": {
                "support_hours": "office",
                "escalation_policy": "default",
                "digest_to": ["bob"],
            }
        },
        "channel_fallback": False,
    }
    raw.update(over)
    return PagingConfig.model_validate(raw)


@pytest.fixture(autouse=True)
def _creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_TEST_TWILIO_SID", SID)
    monkeypatch.setenv("NOCD_TEST_TWILIO_TOKEN", TOKEN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SAT_2AM.timestamp())


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(SID, TOKEN, now=clock.now, public_url=PUBLIC_URL) as f:
        yield f


async def make(tmp_path: Path, clock: FakeClock, fake: FakeTwilio, **over: Any) -> Harness:
    return await Harness(tmp_path, paging_config(**over), CALS, clock, fake).start()


@pytest.fixture
async def h(tmp_path: Path, clock: FakeClock, fake: FakeTwilio) -> AsyncIterator[Harness]:
    harness = await make(tmp_path, clock, fake)
    yield harness
    await harness.close()


def calls_to(fake: FakeTwilio, number: str) -> list[str]:
    return [sid for sid, c in fake.calls.items() if c.params["To"] == number]


def sms_to(fake: FakeTwilio, number: str) -> list[str]:
    return [sid for sid, m in fake.messages.items() if m.params["To"] == number]


async def test_critical_at_2am_saturday_calls_on_call_and_keypress_4_acks(
    h: Harness, fake: FakeTwilio
) -> None:
    inc = await h.open_incident()
    await h.tick()
    [sid] = calls_to(fake, ALICE)
    call = fake.calls[sid].params
    assert call["From"] == "+15550100"
    assert call["Url"].startswith(f"{PUBLIC_URL}/twilio/voice/page.{inc.id}.0.0.alice.voice")
    assert call["StatusCallback"].startswith(f"{PUBLIC_URL}/twilio/status/")
    assert all(r.authorized for r in fake.requests)

    twiml = await fake.answer(sid)
    assert "<Gather" in twiml and 'numDigits="1"' in twiml
    assert "Critical: PBX down at site Main Street" in twiml
    assert "Press 4 to acknowledge, 6 to resolve, 9 to repeat." in twiml

    status, reply = await fake.press(sid, "4")
    assert status == 200
    assert "acknowledged" in reply and "K 1 Q" in reply
    assert await h.state(inc) is IncidentState.ACKNOWLEDGED
    assert (await h.escalation(inc) or ())[3] == "stopped"

    await h.tick(30 * 60, step=5)
    assert len(fake.calls) == 1 and not fake.messages  # escalation stopped: nobody else
    texts = [e.text for e in await h.timeline(inc)]
    assert any("critical outside support hours office: page on-call now" in t for t in texts)
    assert any("escalation stopped: acknowledged by alice via voice" in t for t in texts)


async def test_without_ack_next_step_fires_at_exactly_the_configured_time(
    h: Harness, fake: FakeTwilio, clock: FakeClock
) -> None:
    start = clock.now()
    inc = await h.open_incident()
    await h.tick(299)
    assert len(calls_to(fake, ALICE)) == 1 and not calls_to(fake, BOB)
    await h.tick(1)
    assert clock.now() == start + 300
    assert len(calls_to(fake, BOB)) == 1 and len(sms_to(fake, BOB)) == 1
    assert fake.calls[calls_to(fake, BOB)[0]].created == start + 300
    # Pass 2 (repeat: 1) begins at +10 min, the fallback SMS to Carol at +20 min.
    await h.tick(299)
    assert len(calls_to(fake, ALICE)) == 1
    await h.tick(1)
    assert len(calls_to(fake, ALICE)) == 2
    await h.tick(600)
    assert len(sms_to(fake, CAROL)) == 1
    assert (await h.escalation(inc) or ())[3] == "exhausted"
    await h.tick(1800, step=10)
    assert len(fake.calls) == 4 and len(fake.messages) == 3  # nothing after exhaustion


async def test_completed_call_is_not_an_ack(h: Harness, fake: FakeTwilio) -> None:
    inc = await h.open_incident()
    await h.tick()
    [sid] = calls_to(fake, ALICE)
    await fake.answer(sid, answered_by="machine_start")
    status, _ = await fake.call_status(sid, "completed")
    assert status == 200
    assert await h.state(inc) is IncidentState.TRIGGERED
    await h.tick(300)
    assert len(calls_to(fake, BOB)) == 1  # escalation went on at the step time
    texts = [e.text for e in await h.timeline(inc)]
    assert any("completed — not an acknowledgement" in t for t in texts)
    assert any("answered by machine_start" in t for t in texts)


async def test_no_answer_moves_on_now_after_redial(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    h = await make(tmp_path, clock, fake, redial=1)
    try:
        inc = await h.open_incident()
        await h.tick()
        [first] = calls_to(fake, ALICE)
        await fake.call_status(first, "no-answer")
        await h.tick()
        assert len(calls_to(fake, ALICE)) == 2  # redialled at once
        assert not calls_to(fake, BOB)
        second = next(s for s in calls_to(fake, ALICE) if s != first)
        await fake.call_status(second, "busy")
        await h.tick(2)
        assert len(calls_to(fake, BOB)) == 1  # moved on well before the 5 minutes
        assert clock.now() - inc.opened_at < 10
        texts = [e.text for e in await h.timeline(inc)]
        assert any("moving on to the next step now" in t for t in texts)
    finally:
        await h.close()


async def test_degraded_at_2am_pages_no_one_and_is_in_the_9am_digest(
    h: Harness, fake: FakeTwilio, clock: FakeClock
) -> None:
    held = await h.open_incident(Severity.DEGRADED, title="Phones down at site North")
    gone = await h.open_incident(Severity.DEGRADED, site="south", title="One-way audio South")
    await h.tick(3600, step=60)
    await h.resolve_by_monitor(gone)
    clock.set(datetime(2026, 1, 12, 8, 59, 50, tzinfo=NY))  # Monday morning
    await h.tick(9)
    assert not fake.calls and not fake.messages
    await h.tick(1)
    assert not fake.calls
    [sid] = sms_to(fake, BOB)
    body = fake.messages[sid].params["Body"]
    assert held.code in body and "Phones down at site North" in body
    assert gone.code not in body
    assert any("resolved" in e.text and "digest" in e.text for e in await h.timeline(gone))
    await h.tick(3600, step=60)
    assert len(fake.messages) == 1  # sent once


async def test_weekday_11am_critical_opens_ticket_and_pages_no_one(
    h: Harness, fake: FakeTwilio, clock: FakeClock
) -> None:
    clock.set(MON_11AM)
    inc = await h.open_incident()
    await h.tick(1200, step=10)
    assert not fake.calls and not fake.messages
    [routing] = [e for e in await h.timeline(inc) if e.kind == "routing"]
    assert "inside support hours office: ticket to the support queue, no page" in routing.text
    assert routing.data["ticket"] is True and routing.data["page"] is False


async def test_forged_and_replayed_webhooks_change_nothing(h: Harness, fake: FakeTwilio) -> None:
    inc = await h.open_incident()
    await h.tick()
    [sid] = calls_to(fake, ALICE)
    await fake.answer(sid)
    # Forged: a signature made with another token.
    forged = FakeTwilio(SID, "not-the-token").sign(fake.gather_action(sid), {"Digits": "4"})
    status, _ = await fake.press(sid, "4", signature=forged)
    assert status == 403
    status, _ = await fake.press(sid, "4", signature="")
    assert status == 403
    status, _ = await fake.inbound_sms(ALICE, f"4 {inc.code}", signature="bm9wZQ==")
    assert status == 403
    # Signed for the local URL instead of the configured public one: refused too.
    local = fake.webhook_base or ""
    params = {"CallSid": sid, "Digits": "4"}
    url = f"{local}/twilio/gather/page.{inc.id}.0.0.alice.voice"
    assert fake._session is not None
    async with fake._session.post(
        url, data=params, headers={"X-Twilio-Signature": fake.sign(url, params)}
    ) as r:
        assert r.status == 403
    async with fake._session.get(f"{local}/twilio/sms") as r:
        assert r.status == 405
    assert await h.state(inc) is IncidentState.TRIGGERED
    assert h.acker.calls == []

    # A valid keypress acks; its replay gets the same answer and changes nothing.
    status, first = await fake.press(sid, "4")
    assert status == 200 and "acknowledged" in first
    status, again = await fake.replay_last()
    assert status == 200 and again == first
    assert await fake.answer(sid) and "already" not in again
    assert "is acknowledged. Nothing to do" in fake.last_twiml[sid]  # no new Gather offered
    assert len(h.acker.calls) == 1


async def test_sms_replies_ack_and_resolve(h: Harness, fake: FakeTwilio) -> None:
    a = await h.open_incident()
    b = await h.open_incident(site="north", title="Trunk down North")
    status, reply = await fake.inbound_sms(ALICE, f"ack {a.code.lower()}")
    assert status == 200 and f"<Message>nocd: {a.code} acknowledged. Thank you.</Message>" in reply
    assert await h.state(a) is IncidentState.ACKNOWLEDGED
    _, reply = await fake.inbound_sms(ALICE, f"ACK {a.code}")
    assert "was already acknowledged" in reply
    _, reply = await fake.inbound_sms(ALICE, f"6 {b.code}")
    assert "resolved" in reply and await h.state(b) is IncidentState.RESOLVED
    _, reply = await fake.inbound_sms("+15550199", f"4 {a.code}")
    assert "not an on-call contact" in reply
    _, reply = await fake.inbound_sms(ALICE, "hello?")
    assert "reply 4 CODE" in reply
    _, reply = await fake.inbound_sms(ALICE, "4 ZZZ")
    assert "could not be acknowledged" in reply
    # Replaying the same MessageSid returns the first answer and does nothing more.
    n = len(h.acker.calls)
    s1 = await fake.inbound_sms(BOB, f"RESOLVE {a.code}", sid="SM" + "ab" * 16)
    s2 = await fake.inbound_sms(BOB, f"RESOLVE {a.code}", sid="SM" + "ab" * 16)
    assert s1 == s2 and len(h.acker.calls) == n + 1


async def test_twilio_500_for_ten_minutes_delays_but_delivers_once(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    h = await make(
        tmp_path,
        clock,
        fake,
        escalation_policies={
            "default": {"steps": [{"schedules": ["primary"], "channels": ["voice"], "wait": "1h"}]}
        },
    )
    try:
        fake.set_mode("500")
        inc = await h.open_incident()
        await h.tick(600, step=5)
        # Retried with backoff all along (a send, then reconciling lists before any resend).
        assert not fake.calls and len(fake.requests) >= 4
        fake.set_mode("ok")
        await h.tick(600, step=5)
        assert len(calls_to(fake, ALICE)) == 1
        await h.tick(600, step=5)
        assert len(calls_to(fake, ALICE)) == 1
        assert any("sent: CA" in e.text for e in await h.timeline(inc))
    finally:
        await h.close()


async def test_in_doubt_send_is_reconciled_not_resent(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    h = await make(tmp_path, clock, fake)
    try:
        fake.set_mode("reset_after_create", count=1)
        inc = await h.open_incident()
        await h.tick(120, step=2)
        assert len(fake.calls) == 1 and len(fake.creates("call")) == 1
        lists = [r for r in fake.requests if r.method == "GET" and r.path.endswith("Calls.json")]
        assert lists and lists[0].query.get("To") == ALICE
        assert any("reconciled" in e.text for e in await h.timeline(inc))
    finally:
        await h.close()


async def test_restart_and_clock_jump_neither_skip_nor_double(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    h = await make(tmp_path, clock, fake)
    try:
        inc = await h.open_incident()
        await h.tick()
        await h.restart()
        await h.tick(10)
        assert len(calls_to(fake, ALICE)) == 1  # no double after the restart
        clock.advance(3 * 3600)  # nocd was down (or the wall clock jumped) for 3 hours
        for _ in range(5):
            await h.tick()
        # Every remaining step fired once, in order: bob (pass 1), alice + bob (pass 2), carol;
        # bob's second call waits out the bundle window after his first (no double ring).
        assert len(calls_to(fake, ALICE)) == 2 and len(calls_to(fake, BOB)) == 1
        await h.tick(70)
        assert len(calls_to(fake, BOB)) == 2
        assert len(sms_to(fake, CAROL)) == 1
        steps = [e.data.get("step") for e in await h.timeline(inc) if "targets" in e.data]
        assert steps == [0, 1, 0, 1, 2]
    finally:
        await h.close()


async def test_storm_of_200_sites_pages_each_person_within_rate_caps(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    h = await make(
        tmp_path,
        clock,
        fake,
        escalation_policies={
            "default": {
                "steps": [{"schedules": ["primary"], "channels": ["voice", "sms"], "wait": "2h"}]
            }
        },
    )
    try:
        start = clock.now()
        incidents = []
        for i in range(200):  # 200 sites failing over 5 minutes
            incidents.append(await h.open_incident(site=f"site-{i}", title=f"PBX down site {i}"))
            await h.tick(1.5, step=1.5)
        await h.tick(20 * 60, step=10)
        calls = sorted(c.created for c in fake.calls.values())
        texts = sorted(m.created for m in fake.messages.values())
        for times, cap in ((calls, 3), (texts, 5)):
            for t in times:  # any 15-minute window holds at most `cap` pages
                assert sum(1 for u in times if t <= u < t + 900) <= cap
            assert all(b - a >= 60 for a, b in pairwise(times))
        assert 1 <= len(calls) <= 6 and len(texts) <= 10
        assert clock.now() - start < 30 * 60
        async with h.store.reader.execute(
            "SELECT COUNT(DISTINCT x.incident_id) FROM paging_page_incidents x "
            "JOIN paging_pages p ON p.key = x.key WHERE p.person='alice' AND p.channel='sms'"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == 200  # every incident reached alice, bundled
        bundled = [
            m.params["Body"] for m in fake.messages.values() if "incidents:" in m.params["Body"]
        ]
        assert bundled
    finally:
        await h.close()


async def test_keypad_repeat_invalid_key_and_resolve(h: Harness, fake: FakeTwilio) -> None:
    inc = await h.open_incident()
    await h.tick()
    [sid] = calls_to(fake, ALICE)
    await fake.answer(sid)
    voice_url = fake.calls[sid].params["Url"]
    status, twiml = await fake.press(sid, "9")
    assert status == 200 and f'<Redirect method="POST">{voice_url}</Redirect>' in twiml
    assert "<Gather" in await fake.answer(sid)  # Twilio follows the redirect: the alert again
    status, twiml = await fake.press(sid, "1")
    assert "that key is not valid" in twiml and "<Redirect" in twiml
    assert "<Gather" in await fake.answer(sid)
    status, twiml = await fake.press(sid, "6")
    assert "K 1 Q resolved" in twiml
    assert await h.state(inc) is IncidentState.RESOLVED
    assert h.acker.calls == [("resolve", inc.code, "alice", "voice")]


async def test_bare_sms_reply_acks_the_only_incident_paged_to_the_sender(
    h: Harness, fake: FakeTwilio
) -> None:
    inc = await h.open_incident()
    await h.tick()
    _, reply = await fake.inbound_sms(BOB, "4")
    assert "which incident" in reply  # bob was not paged about anything
    _, reply = await fake.inbound_sms(ALICE, "ack")
    assert f"{inc.code} acknowledged" in reply
    assert await h.state(inc) is IncidentState.ACKNOWLEDGED


async def test_second_call_waits_while_the_first_still_rings(h: Harness, fake: FakeTwilio) -> None:
    first = await h.open_incident()
    await h.tick()
    [sid] = calls_to(fake, ALICE)
    await fake.call_status(sid, "ringing")
    await h.tick(90)
    second = await h.open_incident(site="north", title="Trunk down North")
    await h.tick(30)
    assert len(calls_to(fake, ALICE)) == 1  # her phone is still ringing: no busy signal
    assert any("still in progress" in e.text for e in await h.timeline(second))
    await fake.answer(sid)
    await fake.press(sid, "4")
    await fake.call_status(sid, "completed")
    await h.tick(2)
    [again] = [s for s in calls_to(fake, ALICE) if s != sid]
    assert f"page.{second.id}.0.0.alice.voice" in fake.calls[again].params["Url"]
    assert await h.state(first) is IncidentState.ACKNOWLEDGED
    assert await h.state(second) is IncidentState.TRIGGERED
