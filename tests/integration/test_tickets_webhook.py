"""The webhook sink against a real receiver: HMAC signature, idempotency key, error classes."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest

from nocd.delivery import DeliveryError
from nocd.tickets import webhook
from nocd.tickets.sink import TicketOp, TicketView
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.peers import free_port

T0 = 1_767_261_600.0
KEY = b"hook-key-5f0c"
VIEW = TicketView(
    7, 42, "K7Q", "nocd-42-1767261600", "PBX unreachable", "evidence: <no reply> & more",
    "P2", "open", T0, T0 + 3600, None, "main-street", "acme", {"serial": "SN-0001"},
)  # fmt: skip


def op(action: str = "create", seq: int = 1) -> TicketOp:
    return TicketOp(action, seq, f"ticket:42:hook:{seq}", T0 + seq, f"change {seq}", VIEW)  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver(KEY)
    await r.start()
    yield r
    await r.stop()


def sink(url: str, monkeypatch: pytest.MonkeyPatch, key: str = KEY.decode()) -> webhook.WebhookSink:
    monkeypatch.setenv("NOCD_TEST_HOOK_KEY", key)
    cfg = webhook.Config.model_validate(
        {
            "type": "webhook",
            "url": url,
            "secret": "${NOCD_TEST_HOOK_KEY}",
            "headers": {"X-Tenant": "acme"},
            "timeout": "3s",
        }
    )
    return webhook.build(cfg)


async def test_signed_body_and_idempotency(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sink(receiver.url, monkeypatch)
    assert await s.send(op()) == "HD-nocd-42-1767261600"
    await s.send(op())  # a resend after an in-doubt attempt
    await s.send(op("resolve", 2))
    assert receiver.forged == 0 and receiver.duplicates == 1
    first = receiver.accepted[0]
    # An independent check of the documented signature: HMAC-SHA256 over the raw body.
    assert first.signature == "sha256=" + hmac.new(KEY, first.raw, hashlib.sha256).hexdigest()
    assert first.key == "ticket:42:hook:1" and first.event == "create"
    body = json.loads(first.raw)
    assert body["ticket"]["response_due"] == "2026-01-01T11:00:00Z"
    assert body["ticket"]["description"] == "evidence: <no reply> & more"
    assert body["incident"] == {"id": 42, "code": "K7Q"} and body["sequence"] == 1
    assert [r.event for r in receiver.accepted] == ["create", "resolve"]


async def test_wrong_key_is_refused_by_the_receiver(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sink(receiver.url, monkeypatch, key="not-the-key")
    with pytest.raises(DeliveryError) as err:
        await s.send(op())
    assert receiver.forged == 1 and receiver.accepted == []
    assert "HTTP 401" in err.value.reason and "not-the-key" not in err.value.reason


@pytest.mark.parametrize(
    ("status", "after", "retryable", "wait"),
    [
        (500, None, True, None),  # server error: retry with backoff
        (503, "30", True, 30.0),  # overloaded, says when
        (429, "7", True, 7.0),  # rate limited
        (429, "Thu, 01 Jan 2099 00:00:00 GMT", True, 3600.0),  # far date: capped at 1 h
        (404, None, False, None),  # wrong URL: retrying cannot help
        (400, None, False, None),  # receiver rejects the payload
        (413, None, False, None),
    ],
)
async def test_http_errors_are_classified(
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    after: str | None,
    retryable: bool,
    wait: float | None,
) -> None:
    receiver.fail_next = [(status, after)]
    with pytest.raises(DeliveryError) as err:
        await sink(receiver.url, monkeypatch).send(op())
    assert (err.value.retryable, err.value.retry_after) == (retryable, wait)
    assert f"HTTP {status}" in err.value.reason


async def test_refused_connection_retries_and_hides_url_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://user:pw-secret@127.0.0.1:{free_port()}/hook?token=q-secret"
    with pytest.raises(DeliveryError) as err:
        await sink(url, monkeypatch).send(op())
    assert err.value.retryable
    assert "pw-secret" not in err.value.reason and "q-secret" not in err.value.reason
    assert "127.0.0.1" in err.value.reason


def test_config_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", "x")
    with pytest.raises(ValueError, match="http:// or https://"):
        webhook.Config.model_validate({"type": "webhook", "url": "ftp://x", "secret": "${K}"})
    with pytest.raises(ValueError, match="may not be written in clear"):
        webhook.Config.model_validate({"type": "webhook", "url": "http://x", "secret": "k"})
