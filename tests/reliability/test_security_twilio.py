"""Twilio webhooks attacked on a running daemon: forged, tampered, by GET, via a proxy, replayed.

The daemon listens on 127.0.0.1 while its configured public URL is https://noc.example.com,
as behind a reverse proxy: Twilio signs the public URL, the bytes arrive at the internal one.
Every forged, tampered or mis-addressed request must answer 403 (405 for a GET: the routes
are POST only) and leave the store's fingerprint unchanged; a replay of a genuine request must
be an idempotent no-op (same answer, no state change); a genuine keypress acknowledges (the
control that the state check sees a change).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from twilio.request_validator import RequestValidator

from nocd.configload import ConfigError, load_text
from nocd.incidents.engine import random_code
from tests.reliability.test_security import (
    ALICE,
    PUBLIC_URL,
    TWILIO_TOKEN,
    World,
    config,
    running,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running(tmp_path_factory.mktemp("security-twilio")) as w:
        yield w


def sign(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    """X-Twilio-Signature by the official validator."""
    return str(RequestValidator(token).compute_signature(url, params))


async def send(
    w: World,
    path: str,
    params: dict[str, str],
    signature: str,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Deliver a webhook to the daemon's own listener (the proxy's upstream)."""
    hdrs = {"X-Twilio-Signature": signature, **(headers or {})}
    if method == "GET":
        url = f"{w.url}{path}?{urlencode(params)}"
        async with w.http.get(url, headers=hdrs, allow_redirects=False) as r:
            return r.status, await r.text()
    async with w.http.post(w.url + path, data=params, headers=hdrs, allow_redirects=False) as r:
        return r.status, await r.text()


def keys(w: World) -> tuple[str, str, str]:
    """The voice page key, its call SID, and the SMS page key."""
    [voice] = [k for k in w.page_keys if k.endswith(".voice")]
    [sms] = [k for k in w.page_keys if k.endswith(".sms")]
    [sid] = list(w.twilio.calls)
    return voice, sid, sms


def call_params(w: World, sid: str, status: str, **extra: str) -> dict[str, str]:
    """The parameters Twilio posts about the call (as the fake sends them)."""
    return {
        "AccountSid": w.twilio.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": "+15550100",
        "To": ALICE,
        **extra,
    }


def sms_params(w: World, body: str, sid: str = "SM" + "7" * 32) -> dict[str, str]:
    return {
        "AccountSid": w.twilio.account_sid,
        "MessageSid": sid,
        "SmsSid": sid,
        "From": ALICE,
        "To": "+15550100",
        "Body": body,
    }


async def test_replayed_callbacks_are_idempotent_no_ops(world: World) -> None:
    """Twilio signs without a timestamp: a captured genuine request can be sent again."""
    w = world
    voice, sid, sms = keys(w)
    [msid] = list(w.twilio.messages)
    await w.settled()

    async def genuine(path: str, params: dict[str, str]) -> tuple[int, str]:
        return await send(w, path, params, sign(PUBLIC_URL + path, params))

    async def once_then_replayed(path: str, params: dict[str, str], what: str) -> None:
        state0 = await w.state()
        first = await genuine(path, params)
        assert first[0] == 200, (what, first)
        changed = await w.settled()
        assert changed != state0, f"{what}: the genuine request changed nothing"
        for _ in range(3):
            assert await genuine(path, params) == first, what
            assert await w.state() == changed, f"{what}: its replay changed the state"

    status = f"/twilio/status/{voice}"
    # Call progress, each callback replayed; then an old intermediate callback replayed
    # after a later one (it must not move the page back to "ringing").
    await once_then_replayed(status, call_params(w, sid, "ringing"), "ringing")
    await once_then_replayed(status, call_params(w, sid, "in-progress"), "in-progress")
    state0 = await w.settled()
    assert await genuine(status, call_params(w, sid, "ringing")) == (200, "")
    assert await w.state() == state0, "an old 'ringing' replayed after 'in-progress' counted"
    # Answered by a voicemail: the alert is left and noted once, however often replayed.
    machine = call_params(w, sid, "in-progress", AnsweredBy="machine_start")
    await once_then_replayed(f"/twilio/voice/{voice}", machine, "voicemail answer")
    # The SMS page's delivery receipts.
    sms_status = {
        "AccountSid": w.twilio.account_sid,
        "MessageSid": msid,
        "SmsSid": msid,
        "From": "+15550100",
        "To": ALICE,
    }
    for st in ("sent", "delivered"):
        params = {**sms_status, "MessageStatus": st, "SmsStatus": st}
        await once_then_replayed(f"/twilio/status/{sms}", params, f"SMS {st}")
    assert await w.incident_state() == "triggered"


async def test_forged_tampered_misaddressed_and_get_webhooks_change_nothing(world: World) -> None:
    w = world
    voice, sid, sms = keys(w)
    gather = f"/twilio/gather/{voice}"
    press4 = call_params(w, sid, "in-progress", Digits="4")
    ack_sms = sms_params(w, f"4 {w.code}")
    status_cb = call_params(w, sid, "completed")
    before = await w.settled()
    cases: list[tuple[str, str, dict[str, str], str, str, dict[str, str]]] = []

    def case(
        what: str,
        path: str,
        params: dict[str, str],
        signature: str,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> None:
        cases.append((what, path, params, signature, method, headers or {}))

    for path, params in (
        (gather, press4),
        ("/twilio/sms", ack_sms),
        (f"/twilio/status/{voice}", status_cb),
        (f"/twilio/voice/{voice}", call_params(w, sid, "in-progress")),
    ):
        public = PUBLIC_URL + path
        case("no signature", path, params, "")
        case("signed with another auth token", path, params, sign(public, params, "x" * 32))
        case("garbage signature", path, params, "bm90IGEgc2lnbmF0dXJl")
        # Tampered: a genuine signature, then one parameter changed, added or removed.
        good = sign(public, params)
        for name in params:
            case(f"tampered {name}", path, {**params, name: params[name] + "1"}, good)
        case("parameter added", path, {**params, "Extra": "1"}, good)
        case("parameter removed", path, dict(list(params.items())[1:]), good)
        case("query string added", path + "?Digits=4", params, good)
        # Proxy: signed for the URL the daemon sees (Host, http) instead of the public one,
        # or for an attacker's host that forwarded headers claim to be the public one.
        case("signed for the internal URL", path, params, sign(w.url + path, params))
        case(
            "signed for http:// of the public host",
            path,
            params,
            sign(PUBLIC_URL.replace("https", "http") + path, params),
        )
        evil = "https://evil.example.net"
        case(
            "forwarded headers naming another host",
            path,
            params,
            sign(evil + path, params),
            headers={
                "Host": "evil.example.net",
                "X-Forwarded-Host": "evil.example.net",
                "X-Forwarded-Proto": "https",
                "Forwarded": "host=evil.example.net;proto=https",
            },
        )
        # By GET, signed as Twilio signs GETs (the URL with its query): no such route.
        query = f"{public}?{urlencode(params)}"
        case("sent by GET", path, params, sign(query, {}), method="GET")
    # Another page's key in the URL: a genuine request re-addressed.
    case(
        "re-addressed to the SMS page",
        f"/twilio/gather/{sms}",
        press4,
        sign(PUBLIC_URL + gather, press4),
    )

    wrong = []
    for what, path, params, signature, method, headers in cases:
        status, text = await send(w, path, params, signature, method, headers)
        allowed = {405} if method == "GET" else {403}
        if status not in allowed:
            wrong.append(f"{what}: {method} {path} -> {status} {text[:100]}")
        if await w.state() != before:
            wrong.append(f"{what}: {method} {path} CHANGED STATE")
            before = await w.settled()
    assert not wrong, "\n".join(wrong)
    refused = [e for e in w.logs if e.get("event") == "twilio webhook refused: bad signature"]
    assert len(refused) >= len([c for c in cases if c[4] == "POST"])
    # Genuinely from Twilio but texted by a stranger: answered, nothing changes.
    stranger = {**sms_params(w, f"4 {w.ref}", sid="SM" + "5" * 32), "From": "+15550199"}
    status, text = await send(
        w, "/twilio/sms", stranger, sign(PUBLIC_URL + "/twilio/sms", stranger)
    )
    assert status == 200 and "not an on-call contact" in text
    assert await w.state() == before
    assert await w.incident_state() == "triggered"

    # The genuine keypress, through the proxy (signed for the public URL), acknowledges …
    status, first = await send(w, gather, press4, sign(PUBLIC_URL + gather, press4))
    assert status == 200 and "acknowledged" in first, first
    assert await w.incident_state() == "acknowledged"
    acked = await w.settled()
    assert acked != before
    # … and its replay, byte for byte, answers the same and changes nothing.
    status, again = await send(w, gather, press4, sign(PUBLIC_URL + gather, press4))
    assert (status, again) == (200, first)
    assert await w.state() == acked
    # A genuine SMS reply resolves; its replays answer the same and change nothing.
    resolve = sms_params(w, f"6 {w.ref}", sid="SM" + "6" * 32)
    status, first = await send(w, "/twilio/sms", resolve, sign(PUBLIC_URL + "/twilio/sms", resolve))
    assert status == 200 and "resolved" in first, first
    assert await w.incident_state() == "resolved"
    resolved = await w.settled()
    for _ in range(3):
        replayed = await send(w, "/twilio/sms", resolve, sign(PUBLIC_URL + "/twilio/sms", resolve))
        assert replayed == (200, first)
    assert await w.state() == resolved
    print(f"twilio webhook attacks refused: {len(cases)}")


async def test_without_a_public_url_twilio_is_refused_at_load(tmp_path: Path) -> None:
    """No configured public URL, no Twilio: nocd never falls back to the Host it sees."""
    with pytest.raises(ConfigError, match=r"twilio needs daemon\.public_url"):
        load_text(config(tmp_path, 1, 2, public_url=None), "security.yaml")


async def test_an_all_digit_incident_code_is_acknowledged_by_keypress(tmp_path: Path) -> None:
    """A code of digits only (older databases may hold one) is found as a code, not an id."""
    async with running(tmp_path, code="379") as w:
        assert w.code == "379"
        voice, sid, _ = keys(w)
        gather = f"/twilio/gather/{voice}"
        press4 = call_params(w, sid, "in-progress", Digits="4")
        status, reply = await send(w, gather, press4, sign(PUBLIC_URL + gather, press4))
        assert status == 200
        assert await w.incident_state() == "acknowledged", reply


async def test_new_incident_codes_are_never_all_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated codes always hold a letter, so no code can be mistaken for an incident id."""
    monkeypatch.setattr("nocd.incidents.engine._CODE_ALPHABET", "37A")
    codes = [random_code(3) for _ in range(2000)]
    assert all(not c.isdigit() for c in codes)
    assert {c for c in codes if "A" in c and any(d in c for d in "37")}  # digits still used
