"""Notifiers: the one-method interface that sends a page, and the registry keyed by `type:`.

Contract:
    class Notifier(Protocol):
        dry_run: bool
        async def send(page: PageRequest) -> str          # provider id; raises DeliveryError
        async def find_sent(page, since, exclude) -> str | None  # reconcile an in-doubt send
        async def status(channel, provider_id) -> str | None    # for `nocd test-page`
        async def close() -> None
    build_notifier(provider_config, base_url=None) -> Notifier
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from paging.config import Channel, DryRunProvider, TwilioProvider

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One notification to one number: a call that speaks `text`, or an SMS of `text`."""

    key: str  # the outbox key; also the marker used to reconcile in-doubt sends
    channel: Channel
    to: str
    text: str
    voice_url: str | None = None  # where Twilio fetches the TwiML (None: inline TwiML)
    status_url: str | None = None  # status callback URL
    twiml: str | None = None  # inline TwiML when there is no public URL
    extra: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    """Sends pages through one provider."""

    dry_run: bool

    async def send(self, page: PageRequest) -> str:
        """Send the page; return the provider's id; raise DeliveryError on failure."""
        ...

    async def find_sent(
        self, page: PageRequest, since: float, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """The provider id of an earlier send of this page since `since` (not in `exclude`)."""
        ...

    async def status(self, channel: Channel, provider_id: str) -> str | None:
        """The provider's current status of a call or message."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class DryRunNotifier:
    """Sends nothing: logs the page, clearly marked DRY-RUN, and returns a fake id."""

    dry_run = True

    def __init__(self) -> None:
        self.sent: list[PageRequest] = []

    async def send(self, page: PageRequest) -> str:
        """Record the page as if sent."""
        self.sent.append(page)
        log.warning(
            "DRY-RUN page (not sent)",
            channel=page.channel,
            to=page.to,
            key=page.key,
            text=page.text,
        )
        return f"DRYRUN-{page.key}"

    async def find_sent(
        self, page: PageRequest, since: float, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """A dry-run send is never in doubt: report it when it was recorded."""
        return f"DRYRUN-{page.key}" if any(p.key == page.key for p in self.sent) else None

    async def status(self, channel: Channel, provider_id: str) -> str | None:
        """Dry-run pages are 'delivered' by definition."""
        return "completed" if channel == "voice" else "delivered"

    async def close(self) -> None:
        """Nothing to release."""


def _twilio(cfg: Any, base_url: str | None) -> Notifier:
    from paging.twilio_notifier import TwilioNotifier

    return TwilioNotifier(cfg, base_url=base_url)


def _dry(cfg: Any, base_url: str | None) -> Notifier:
    return DryRunNotifier()


NOTIFIERS: dict[str, Callable[[Any, str | None], Notifier]] = {
    "twilio": _twilio,
    "dry_run": _dry,
}
"""The registry: config `type:` → factory(provider_config, base_url)."""


def build_notifier(
    provider: TwilioProvider | DryRunProvider, base_url: str | None = None
) -> Notifier:
    """Build the notifier for the configured provider (base_url points Twilio at a fake).

    Without `base_url`, a Twilio provider's `api_base_url` (config) applies, if set.
    """
    if base_url is None and isinstance(provider, TwilioProvider):
        base_url = provider.api_base_url
    return NOTIFIERS[provider.type](provider, base_url)
