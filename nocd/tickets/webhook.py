"""The `webhook` ticket sink: a signed JSON POST per ticket operation (create/update/close).

The receiver verifies `X-Nocd-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the
shared key and drops repeats by `X-Nocd-Idempotency-Key` (delivery is at-least-once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from nocd.clock import iso
from nocd.delivery import DeliveryError
from nocd.secrets import Secret
from nocd.tickets.sink import (
    SinkConfig,
    TicketOp,
    check_url,
    client_error,
    http_error,
    retry_after,
    safe_url,
)

USER_AGENT = "nocd-tickets/1"


class Config(SinkConfig):
    """A JSON endpoint of a help desk or an automation that opens tickets."""

    type: Literal["webhook"]
    url: str
    secret: Secret
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)


def body(op: TicketOp) -> bytes:
    """The exact bytes POSTed (and signed) for `op`."""
    t = op.ticket
    doc: dict[str, Any] = {
        "action": op.action,
        "sequence": op.seq,
        "idempotency_key": op.key,
        "at": iso(op.at),
        "comment": op.comment,
        "ticket": {
            "number": t.number,
            "fingerprint": t.fingerprint,
            "title": t.title,
            "description": t.description,
            "priority": t.priority,
            "status": t.status,
            "opened_at": iso(t.opened_at),
            "response_due": iso(t.response_due) if t.response_due else None,
            "resolve_due": iso(t.resolve_due) if t.resolve_due else None,
            "site": t.site,
            "customer": t.customer,
            "facts": t.facts,
        },
        "incident": {"id": t.incident_id, "code": t.incident_code},
        "provider_id": op.provider_id,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def signature(key: bytes, raw: bytes) -> str:
    """The X-Nocd-Signature header value for `raw` under `key`."""
    return "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()


class WebhookSink:
    """POSTs signed ticket operations to one URL."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    async def send(self, op: TicketOp) -> str:
        """POST `op`; the provider id is the reply's `id`, else the ticket fingerprint."""
        cfg = self._cfg
        raw = body(op)
        headers = {
            **cfg.headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Nocd-Signature": signature(cfg.secret.get_secret_value().encode(), raw),
            "X-Nocd-Idempotency-Key": op.key,
            "X-Nocd-Event": op.action,
        }
        what = f"webhook POST {safe_url(cfg.url)}"
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(cfg.url, data=raw, headers=headers, allow_redirects=False) as resp,
            ):
                text = await resp.text(errors="replace")
                if resp.status >= 300:
                    wait = retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"))
                    raise http_error(resp.status, what, wait)
        except TimeoutError:
            raise DeliveryError(f"{what}: timed out after {cfg.timeout:g}s", True) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{what}: {client_error(exc)}", True) from None
        return _provider_id(text) or op.provider_id or op.ticket.fingerprint


def _provider_id(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("id"), str | int):
        return str(doc["id"])[:200]
    return None


def build(cfg: Config) -> WebhookSink:
    """The sink for `cfg` (registry entry point)."""
    return WebhookSink(cfg)
