"""The Twilio notifier (official client) against the fake: errors, fallbacks, test pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nocd.clock import FakeClock
from nocd.delivery import DeliveryError
from paging import oncall
from paging.config import TwilioProvider
from paging.notifiers import PageRequest
from paging.twilio_notifier import TwilioNotifier
from tests.fakes.paging_harness import Harness
from tests.fakes.twilio_fake import FakeTwilio
from tests.integration.test_twilio_paging import (
    ALICE,
    BOB,
    CALS,
    SAT_2AM,
    SID,
    TOKEN,
    calls_to,
    paging_config,
    sms_to,
)


@pytest.fixture(autouse=True)
def _creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_TEST_TWILIO_SID", SID)
    monkeypatch.setenv("NOCD_TEST_TWILIO_TOKEN", TOKEN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SAT_2AM.timestamp())


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(SID, TOKEN, now=clock.now) as f:
        yield f


def provider(token: str = TOKEN, **over: Any) -> TwilioProvider:
    return TwilioProvider.model_validate(
        {
            "type": "twilio",
            "account_sid": "${NOCD_TEST_TWILIO_SID}",
            "auth_token": "${NOCD_TEST_TWILIO_TOKEN}",
            "from_number": "+15550100",
            **over,
        }
    )


@pytest.fixture
async def notifier(fake: FakeTwilio) -> AsyncIterator[TwilioNotifier]:
    n = TwilioNotifier(provider(timeout="1s"), base_url=fake.base_url)
    yield n
    await n.close()


VOICE = PageRequest(
    "page.1.0.0.alice.voice",
    "voice",
    ALICE,
    "Critical: PBX down.",
    voice_url="https://noc.example.com/twilio/voice/page.1.0.0.alice.voice",
    status_url="https://noc.example.com/twilio/status/page.1.0.0.alice.voice",
)
SMS = PageRequest("page.1.0.0.alice.sms", "sms", ALICE, "nocd P1 CRITICAL K1Q: PBX down.")


async def test_send_call_and_sms_like_twilio_expects(
    fake: FakeTwilio, notifier: TwilioNotifier
) -> None:
    sid = await notifier.send(VOICE)
    assert sid.startswith("CA") and fake.calls[sid].params["Url"] == VOICE.voice_url
    form = fake.calls[sid].params
    assert form["StatusCallbackMethod"] == "POST" and form["From"] == "+15550100"
    msid = await notifier.send(SMS)
    assert msid.startswith("SM") and fake.messages[msid].params["Body"] == SMS.text
    assert await notifier.status("voice", sid) == "queued"
    assert all(r.authorized for r in fake.requests)


@pytest.mark.parametrize(
    ("mode", "retryable", "retry_after", "needle"),
    [
        ("429", True, 30.0, "HTTP 429"),
        ("500", True, None, "HTTP 500"),
        ("timeout", True, None, "Timeout"),
        ("reset", True, None, "twilio voice"),
    ],
)
async def test_errors_are_classified(
    fake: FakeTwilio,
    notifier: TwilioNotifier,
    mode: str,
    retryable: bool,
    retry_after: float | None,
    needle: str,
) -> None:
    fake.set_mode(mode)
    with pytest.raises(DeliveryError) as err:
        await notifier.send(VOICE)
    assert err.value.retryable is retryable and err.value.retry_after == retry_after
    assert needle in err.value.reason and TOKEN not in err.value.reason


async def test_bad_credentials_retry_and_never_leak(
    fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOCD_TEST_TWILIO_TOKEN", "wrong-token-value")
    n = TwilioNotifier(provider(), base_url=fake.base_url)
    try:
        with pytest.raises(DeliveryError) as err:
            await n.send(SMS)
    finally:
        await n.close()
    assert err.value.retryable and "HTTP 401" in err.value.reason
    assert "wrong-token-value" not in err.value.reason
    assert fake.requests[-1].authorized is False


async def test_invalid_number_is_permanent(fake: FakeTwilio, notifier: TwilioNotifier) -> None:
    fake.reject[f"message:{ALICE}"] = (21211, "The 'To' number is not a valid phone number.")
    with pytest.raises(DeliveryError) as err:
        await notifier.send(SMS)
    assert not err.value.retryable and "21211" in err.value.reason


async def test_reconcile_matches_only_unclaimed_sends(
    fake: FakeTwilio, notifier: TwilioNotifier, clock: FakeClock
) -> None:
    since = clock.now()
    assert await notifier.find_sent(VOICE, since) is None
    first = await notifier.send(VOICE)
    assert await notifier.find_sent(VOICE, since) == first
    assert await notifier.find_sent(VOICE, since, frozenset({first})) is None
    msid = await notifier.send(SMS)
    other = PageRequest("page.2.0.0.alice.sms", "sms", ALICE, "another text")
    assert await notifier.find_sent(SMS, since) == msid
    assert await notifier.find_sent(other, since) is None


async def test_failed_call_falls_back_to_sms_and_undelivered_sms_to_voice(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    fake.public_url = "https://noc.example.com"
    steps = [
        {"schedules": ["primary"], "channels": ["voice"], "wait": "5m"},
        {"people": ["bob"], "channels": ["sms"], "wait": "5m"},
    ]
    cfg = paging_config(channel_fallback=True, escalation_policies={"default": {"steps": steps}})
    h = await Harness(tmp_path, cfg, CALS, clock, fake).start()
    try:
        fake.reject[f"call:{ALICE}"] = (21215, "Geo permission not enabled for the number")
        inc = await h.open_incident()
        await h.tick(5)
        assert not calls_to(fake, ALICE) and len(sms_to(fake, ALICE)) == 1
        assert any("channel fallback: sms to alice" in e.text for e in await h.timeline(inc))
        # Step 2 texts bob; his SMS is undelivered → a fallback call, once.
        await h.tick(300)
        [bob_sms] = sms_to(fake, BOB)
        await fake.message_status(bob_sms, "undelivered")
        await fake.message_status(bob_sms, "undelivered")
        await h.tick(2)
        assert len(calls_to(fake, BOB)) == 1
    finally:
        await h.close()


async def test_test_page_waits_for_the_outcome(
    fake: FakeTwilio, notifier: TwilioNotifier, clock: FakeClock
) -> None:
    polls: list[float] = []

    async def sleep(seconds: float) -> None:
        polls.append(seconds)
        clock.advance(seconds)
        if len(polls) == 2:
            for m in fake.messages.values():
                m.status = "delivered"

    cfg = paging_config()
    res = await oncall.test_page(cfg, "+1 555 0101", "sms", notifier, clock, sleep=sleep)
    assert res.ok and res.status == "delivered" and res.provider_id in fake.messages
    assert "test page" in next(iter(fake.messages.values())).params["Body"]

    async def never(seconds: float) -> None:
        clock.advance(seconds)

    res = await oncall.test_page(cfg, ALICE, "voice", notifier, clock, wait_for=10, sleep=never)
    assert not res.ok and res.status == "queued" and "no final status" in res.detail
    assert "<Say" in str(fake.calls[str(res.provider_id)].params["Twiml"])
    fake.set_mode("500")
    res = await oncall.test_page(cfg, ALICE, "sms", notifier, clock, sleep=never)
    assert not res.ok and res.status == "error" and "HTTP 500" in res.detail


async def test_no_fallback_sms_when_the_step_already_texted(
    tmp_path: Path, clock: FakeClock, fake: FakeTwilio
) -> None:
    fake.public_url = "https://noc.example.com"
    h = await Harness(tmp_path, paging_config(channel_fallback=True), CALS, clock, fake).start()
    try:
        await h.open_incident()
        await h.tick(300)  # step 2: bob by voice and SMS
        [call] = calls_to(fake, BOB)
        await fake.call_status(call, "no-answer")
        await h.tick(2)
        assert len(sms_to(fake, BOB)) == 1
    finally:
        await h.close()


async def test_fake_pages_lists_like_twilio(fake: FakeTwilio, notifier: TwilioNotifier) -> None:
    for _ in range(60):
        await notifier.send(SMS)
    api = notifier._api()
    listed = await api.messages.list_async(to=ALICE, page_size=25)
    assert len(listed) == 60 and len({m.sid for m in listed}) == 60
    pages = [r for r in fake.requests if r.method == "GET"]
    assert len(pages) == 3 and pages[1].query["Page"] == "1"
    with pytest.raises(DeliveryError, match="HTTP 404"):
        await notifier.status("voice", "CA" + "0" * 32)
