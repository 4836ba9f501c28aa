"""Twilio voice and SMS notifier over the official library and its async HTTP client.

`TwilioNotifier(cfg, base_url=None)`: `base_url` (e.g. http://127.0.0.1:PORT of the test
fake) replaces https://api.twilio.com by rewriting each request's scheme and host in a
subclass of AsyncTwilioHttpClient (PITFALLS: twilio has no base-URL setting).
Errors become DeliveryError: 429/5xx/network → retryable (a send that may have reached
Twilio is reconciled before any resend), waiting as long as a 429/503's Retry-After asks (at
most MAX_RETRY_AFTER); invalid number and other 4xx → permanent.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from nocd.delivery import DeliveryError
from nocd.tickets.sink import retry_after
from paging.config import Channel, TwilioProvider
from paging.notifiers import PageRequest

log = structlog.get_logger(__name__)

_CLOCK_SKEW = 300.0  # provider timestamps vs ours: look this far back when reconciling
MAX_RETRY_AFTER = 300.0  # a page never waits longer than this on the provider's say-so
RATE_LIMITED_WAIT = 30.0  # a 429 without Retry-After
# The Retry-After of the last 429/503 reply in this task: the library's exceptions drop the
# headers, and each send runs in its own task, so a context variable carries it to _classify.
_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)


class _RebasedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The official async client, sending to `base_url` instead of api.twilio.com.

    `request` is re-implemented (same behaviour as the library's) because the library
    passes aiohttp.BasicAuth, deprecated in aiohttp 3.14; the header is built directly.
    """

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self._base = urlsplit(base_url) if base_url else None
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's signature
        allow_redirects: bool = False,
    ) -> Response:
        """Send one API request and wrap the reply as the library expects."""
        if self._base is not None:
            u = urlsplit(url)
            url = urlunsplit((self._base.scheme, self._base.netloc, u.path, u.query, u.fragment))
        hdrs = dict(headers or {})
        if auth is not None:
            hdrs["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        total = timeout if timeout is not None else self.timeout
        async with self._session.request(
            method.upper(),
            url,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=hdrs,
            timeout=aiohttp.ClientTimeout(total=total),
            allow_redirects=allow_redirects,
        ) as resp:
            if resp.status in (429, 503):
                wait = retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"))
                _retry_after.set(wait)
            return Response(resp.status, await resp.text(), resp.headers)

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _http_status(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, detail) of a Twilio API error: a REST error, or a list's failed page."""
    if isinstance(exc, TwilioRestException):
        return int(exc.status or 0), f"code {exc.code}: {str(exc.msg)[:200]}"
    if isinstance(exc, TwilioException) and len(exc.args) > 1:
        status = getattr(exc.args[1], "status_code", None)  # ("Unable to fetch page", Response)
        if isinstance(status, int):
            return status, str(exc.args[0])[:200]
    return None


def _classify(exc: BaseException, what: str) -> DeliveryError:
    """Map a Twilio/network failure onto DeliveryError (no secrets in the reason)."""
    http = _http_status(exc)
    if http is not None:
        status, detail = http
        reason = f"twilio {what}: HTTP {status} {detail}"
        asked = _retry_after.get() if status in (429, 503) else None
        wait = min(asked, MAX_RETRY_AFTER) if asked is not None else None
        if status == 429:
            return DeliveryError(reason, retryable=True, retry_after=wait or RATE_LIMITED_WAIT)
        if status >= 500 or status in (401, 403):
            # 401/403: credentials may be fixed by a reload; a page must not be dropped.
            return DeliveryError(reason, retryable=True, retry_after=wait)
        return DeliveryError(reason, retryable=False)
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ClientError | OSError):
        return DeliveryError(f"twilio {what}: {type(exc).__name__}: {exc}"[:300], retryable=True)
    return DeliveryError(f"twilio {what}: {type(exc).__name__}: {exc}"[:300], retryable=True)


def _ts(v: Any) -> float | None:
    return v.timestamp() if isinstance(v, datetime) else None


class TwilioNotifier:
    """Places calls and sends SMS through Twilio's REST API."""

    dry_run = False

    def __init__(self, cfg: TwilioProvider, base_url: str | None = None) -> None:
        self._cfg = cfg
        self._base_url = base_url
        self._client: Client | None = None
        self._http: _RebasedHttpClient | None = None

    def _api(self) -> Client:
        # Created on first use, inside the running loop (aiohttp sessions need one).
        if self._client is None:
            self._http = _RebasedHttpClient(self._base_url, self._cfg.timeout)
            self._client = Client(
                self._cfg.account_sid.get_secret_value(),
                self._cfg.auth_token.get_secret_value(),
                http_client=self._http,
            )
        return self._client

    async def send(self, page: PageRequest) -> str:
        """Place the call or send the SMS; returns the Call/Message SID."""
        api = self._api()
        _retry_after.set(None)
        try:
            if page.channel == "voice":
                kwargs: dict[str, Any] = {"to": page.to, "from_": self._cfg.from_number}
                if page.voice_url:
                    kwargs["url"] = page.voice_url
                else:
                    kwargs["twiml"] = page.twiml or ""
                if page.status_url:
                    kwargs["status_callback"] = page.status_url
                    kwargs["status_callback_event"] = [
                        "initiated",
                        "ringing",
                        "answered",
                        "completed",
                    ]
                    kwargs["status_callback_method"] = "POST"
                if self._cfg.machine_detection:
                    kwargs["machine_detection"] = "Enable"
                call = await api.calls.create_async(**kwargs)
                return str(call.sid)
            msg_kwargs: dict[str, Any] = {
                "to": page.to,
                "from_": self._cfg.from_number,
                "body": page.text,
            }
            if page.status_url:
                msg_kwargs["status_callback"] = page.status_url
            msg = await api.messages.create_async(**msg_kwargs)
            return str(msg.sid)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, never raw
            err = _classify(exc, f"{page.channel} to {page.to}")
            log.warning(
                "twilio send failed", key=page.key, reason=err.reason, retryable=err.retryable
            )
            raise err from None

    async def find_sent(
        self, page: PageRequest, since: float, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """List recent calls/messages to the number; return one that is this page's send.

        Twilio takes no idempotency key: a call created since our first attempt, to this
        number from our number, not already claimed by another page (`exclude`), is ours;
        a message must also carry exactly this page's text.
        """
        api = self._api()
        _retry_after.set(None)
        after = since - _CLOCK_SKEW
        try:
            if page.channel == "voice":
                calls = await api.calls.list_async(
                    to=page.to, from_=self._cfg.from_number, limit=50, page_size=50
                )
                for c in sorted(calls, key=lambda c: _ts(c.date_created) or 0):
                    t = _ts(c.date_created)
                    if t is not None and t >= after and c.sid not in exclude:
                        return str(c.sid)
                return None
            msgs = await api.messages.list_async(
                to=page.to, from_=self._cfg.from_number, limit=50, page_size=50
            )
            for m in sorted(msgs, key=lambda m: _ts(m.date_created) or 0):
                t = _ts(m.date_created)
                if t is not None and t >= after and m.sid not in exclude and m.body == page.text:
                    return str(m.sid)
            return None
        except Exception as exc:  # noqa: BLE001 - cannot reconcile: retry, never resend blindly
            raise _classify(exc, "reconcile") from None

    async def status(self, channel: Channel, provider_id: str) -> str | None:
        """Fetch the current status of a call or message."""
        api = self._api()
        _retry_after.set(None)
        try:
            if channel == "voice":
                return str((await api.calls(provider_id).fetch_async()).status)
            return str((await api.messages(provider_id).fetch_async()).status)
        except Exception as exc:  # noqa: BLE001 - classified like a send
            raise _classify(exc, "status") from None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None
