"""The one ticket-sink interface: a ticket operation in, the provider's ticket id out."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

from pydantic import Field

from nocd.delivery import DeliveryError
from nocd.duration import Duration
from nocd.inventory import Strict

Action = Literal["create", "update", "resolve", "close"]
_URL = re.compile(r"^https?://[^/\s?#]+(/[^\s]*)?$")


class SinkConfig(Strict):
    """Fields every sink has; each sink type subclasses this with `type: Literal[...]`."""

    type: str
    enabled: bool = True
    timeout: Duration = Field(10.0, gt=0, le=300)


def check_url(v: str) -> str:
    """Validate an http(s) base URL and drop a trailing slash."""
    if not _URL.match(v):
        raise ValueError("must be an http:// or https:// URL")
    return v.rstrip("/")


@dataclass(frozen=True, slots=True)
class TicketView:
    """The ticket as a sink sees it: the full current state, so every op is self-contained."""

    number: int
    incident_id: int
    incident_code: str
    fingerprint: str
    title: str
    description: str
    priority: str
    status: str
    opened_at: float
    response_due: float | None
    resolve_due: float | None
    site: str | None
    customer: str | None
    facts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TicketOp:
    """One change to deliver to one sink; `seq` orders the ops of a ticket."""

    action: Action
    seq: int
    key: str  # idempotency key: the same op always carries the same key
    at: float
    comment: str
    ticket: TicketView
    provider_id: str | None = None  # the sink's id for this ticket, once known
    in_doubt: bool = False  # an earlier attempt may have reached the far side

    def to_payload(self) -> dict[str, Any]:
        """The JSON stored in the outbox (provider_id/in_doubt are filled at delivery)."""
        out = asdict(self)
        out.pop("provider_id")
        out.pop("in_doubt")
        return out

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> TicketOp:
        """Rebuild an op from its outbox payload."""
        view = TicketView(**data["ticket"])
        return cls(data["action"], data["seq"], data["key"], data["at"], data["comment"], view)

    def delivering(self, provider_id: str | None, in_doubt: bool) -> TicketOp:
        """A copy carrying what the handler knows at delivery time."""
        return replace(self, provider_id=provider_id, in_doubt=in_doubt)


class Sink(Protocol):
    """A help-desk destination; raises nocd.delivery.DeliveryError on failure."""

    async def send(self, op: TicketOp) -> str:
        """Deliver `op` and return the provider's id of the ticket."""
        ...


def retry_after(value: str | None, date: str | None = None) -> float | None:
    """Parse Retry-After (seconds, or an HTTP date measured against the reply's Date header)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), 3600.0)
    try:
        when = parsedate_to_datetime(value)
        base = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
    if base is None:
        return None  # no server clock to measure against; the outbox backoff applies
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)
    return min(max(0.0, (when - base).total_seconds()), 3600.0)


def safe_url(url: str) -> str:
    """A URL without user-info, query or fragment, fit for error messages (they may hold tokens)."""
    m = re.match(r"^(https?://)(?:[^@/]*@)?([^/?#]*)([^?#]*)", url)
    return "".join(m.groups()) if m else "<url>"


AUTH_RETRY = 300.0
"""Seconds between retries after 401/403: a credential fixed by a reload must not lose ops."""


def http_error(
    status: int, what: str, wait: float | None = None, detail: str = ""
) -> DeliveryError:
    """Classify an HTTP failure: 408/425/429/5xx retry, 401/403 retry slowly, 4xx are final."""
    reason = f"{what}: HTTP {status}" + (f" {detail[:200]}" if detail else "")
    if status in (408, 425, 429) or status >= 500:
        return DeliveryError(reason, retryable=True, retry_after=wait)
    if status in (401, 403):
        return DeliveryError(reason + " (check the credentials)", True, wait or AUTH_RETRY)
    return DeliveryError(reason, retryable=False)


_LABELS = {"pbx": "PBX", "pbx_country": "PBX country", "support_plan": "Support plan"}


def fact_label(key: str) -> str:
    """How a ticket fact's key is shown to people (`pbx_country` → `PBX country`)."""
    return _LABELS.get(key) or key.replace("_", " ").capitalize()


def client_error(exc: Exception) -> str:
    """Describe a transport error without echoing URLs (which may carry tokens)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return f"{type(exc).__name__} ({os_error.strerror})"
    return type(exc).__name__
