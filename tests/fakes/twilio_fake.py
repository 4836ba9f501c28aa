"""A fake of Twilio's REST API (Calls, Messages) that also drives nocd's webhooks as Twilio.

A real aiohttp server on 127.0.0.1: the official `twilio` client is pointed at it. It checks
basic auth, validates parameters like Twilio (E.164 `To`, `Url`/`Twiml` for calls), records
every request (with the fake clock's time), and can be switched at runtime to answer 429 /
500 / 503 (with a Retry-After header when `retry_after` is set), hang (timeout), or reset the
connection before or *after* creating the resource (an in-doubt send).

As Twilio, it POSTs to nocd's webhooks with an X-Twilio-Signature computed by the official
`RequestValidator` over the *public* URL nocd was given (`public_url`), while the bytes go to
the local server (`webhook_base`): status callbacks, answering a call (fetching TwiML),
keypresses into the <Gather> action, and inbound SMS.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from xml.etree import ElementTree

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API = "/2010-04-01/Accounts/{account}"


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, Any]
    authorized: bool
    answered: int = 0
    at: float = 0.0  # the fake clock's time when it arrived


@dataclass
class Resource:
    """A call or message the fake created."""

    sid: str
    kind: str  # call | message
    params: dict[str, Any]
    created: float
    status: str = "queued"
    extra: dict[str, Any] = field(default_factory=dict)


class FakeTwilio:
    """Twilio REST subset + webhook driver. Use `async with FakeTwilio(...) as fake`."""

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 31 + "1",
        auth_token: str = "fake-twilio-auth-token",
        now: Callable[[], float] = time.time,
        public_url: str = "https://noc.example.com",
        webhook_base: str | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.now = now
        self.public_url = public_url.rstrip("/")
        self.webhook_base = webhook_base
        self.requests: list[Recorded] = []
        self.calls: dict[str, Resource] = {}
        self.messages: dict[str, Resource] = {}
        self.mode = "ok"  # ok | 429 | 500 | 503 | timeout | reset | reset_after_create
        self.retry_after: str | None = None  # Retry-After sent with 429 and 503 replies
        self.mode_count: int | None = None  # None: until changed; N: the next N requests
        self.mode_kind: str | None = None  # "call" / "message": the mode hits only that API
        # "call:+1555…" / "message:+1555…" → (Twilio error code, message): a 400 on create
        self.reject: dict[str, tuple[int, str]] = {}
        self._hang = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self.last_twiml: dict[str, str] = {}
        self.last_post: tuple[str, dict[str, str], str] = ("", {}, "")

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTwilio:
        app = web.Application()
        base = API.format(account="{account}")
        app.router.add_post(f"{base}/Calls.json", self._create_call)
        app.router.add_get(f"{base}/Calls.json", self._list_calls)
        app.router.add_get(base + "/Calls/{sid}.json", self._fetch_call)
        app.router.add_post(f"{base}/Messages.json", self._create_message)
        app.router.add_get(f"{base}/Messages.json", self._list_messages)
        app.router.add_get(base + "/Messages/{sid}.json", self._fetch_message)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._hang.set()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def set_mode(self, mode: str, count: int | None = None) -> None:
        """Switch the error mode at runtime (for the next `count` requests, or until reset)."""
        self.mode, self.mode_count = mode, count
        if mode != "timeout":
            self._hang.set()
            self._hang = asyncio.Event()

    # ---- REST API ------------------------------------------------------------------------

    def _error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
            headers=headers,
        )

    async def _gate(self, request: web.Request) -> tuple[web.StreamResponse | None, str]:
        """Record the request, check auth and apply the error mode; returns (response, mode)."""
        form = dict(await request.post()) if request.method == "POST" else {}
        auth = request.headers.get("Authorization", "")
        ok = False
        if auth.startswith("Basic "):
            try:
                login, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                ok = login == self.account_sid and password == self.auth_token
            except ValueError:
                ok = False
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), form, ok, at=self.now())
        )
        if not ok or request.match_info["account"] != self.account_sid:
            return self._error(401, 20003, "Authenticate"), "ok"
        mode = self.mode
        kind = "call" if "/Calls" in request.path else "message"
        if self.mode_kind is not None and kind != self.mode_kind:
            mode = "ok"  # a partial outage: the other API works
        elif self.mode_count is not None:
            if self.mode_count <= 0:
                mode = "ok"
            else:
                self.mode_count -= 1
        later = {"Retry-After": self.retry_after} if self.retry_after else None
        if mode == "429":
            return self._error(429, 20429, "Too Many Requests", later), mode
        if mode == "500":
            return self._error(500, 20500, "Internal Server Error"), mode
        if mode == "503":
            return self._error(503, 20503, "Service Unavailable", later), mode
        if mode == "timeout":
            await self._hang.wait()
            return self._error(503, 20503, "Service Unavailable"), mode
        if mode == "reset":
            self._reset(request)
            return web.Response(status=500), mode
        return None, mode

    @staticmethod
    def _reset(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()

    def _stamp(self, t: float) -> str:
        return format_datetime(datetime.fromtimestamp(t, UTC), usegmt=True)

    def _call_json(self, r: Resource) -> dict[str, Any]:
        return {
            "sid": r.sid,
            "account_sid": self.account_sid,
            "to": r.params.get("To"),
            "from": r.params.get("From"),
            "status": r.status,
            "direction": "outbound-api",
            "date_created": self._stamp(r.created),
            "date_updated": self._stamp(r.created),
            "start_time": None,
            "end_time": None,
            "duration": None,
            "answered_by": None,
            "api_version": "2010-04-01",
            "uri": f"{API.format(account=self.account_sid)}/Calls/{r.sid}.json",
        }

    def _message_json(self, r: Resource) -> dict[str, Any]:
        return {
            "sid": r.sid,
            "account_sid": self.account_sid,
            "to": r.params.get("To"),
            "from": r.params.get("From"),
            "body": r.params.get("Body"),
            "status": r.status,
            "direction": "outbound-api",
            "num_segments": "1",
            "date_created": self._stamp(r.created),
            "date_updated": self._stamp(r.created),
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "api_version": "2010-04-01",
            "uri": f"{API.format(account=self.account_sid)}/Messages/{r.sid}.json",
        }

    def _check_numbers(self, form: dict[str, Any], kind: str) -> web.Response | None:
        to, frm = str(form.get("To", "")), str(form.get("From", ""))
        if not to:
            return self._error(400, 21201, "No 'To' number is specified")
        if not to.startswith("+") or not to[1:].isdigit():
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not frm:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if f"{kind}:{to}" in self.reject:
            code, message = self.reject[f"{kind}:{to}"]
            return self._error(400, code, message)
        return None

    async def _create(self, request: web.Request, kind: str) -> web.StreamResponse:
        early, mode = await self._gate(request)
        if early is not None:
            return early
        form = self.requests[-1].form
        bad = self._check_numbers(form, kind)
        if bad is not None:
            return bad
        if kind == "call" and not (form.get("Url") or form.get("Twiml")):
            return self._error(400, 21205, "Url parameter is required.")
        if kind == "message" and not form.get("Body"):
            return self._error(400, 21602, "Message body is required.")
        prefix = "CA" if kind == "call" else "SM"
        r = Resource(prefix + secrets.token_hex(16), kind, form, self.now())
        (self.calls if kind == "call" else self.messages)[r.sid] = r
        if mode == "reset_after_create":
            self._reset(request)  # created, but the client never learns it: in doubt
            return web.Response(status=500)
        body = self._call_json(r) if kind == "call" else self._message_json(r)
        return web.json_response(body, status=201)

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, "call")

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, "message")

    async def _list(self, request: web.Request, kind: str) -> web.StreamResponse:
        early, _ = await self._gate(request)
        if early is not None:
            return early
        q = request.query
        items = list((self.calls if kind == "call" else self.messages).values())
        items = [
            r
            for r in items
            if (not q.get("To") or r.params.get("To") == q["To"])
            and (not q.get("From") or r.params.get("From") == q["From"])
        ]
        items.sort(key=lambda r: r.created, reverse=True)  # Twilio lists newest first
        size = int(q.get("PageSize", "50"))
        page = int(q.get("Page", "0"))
        chunk = items[page * size : (page + 1) * size]
        name = "calls" if kind == "call" else "messages"
        path = f"{API.format(account=self.account_sid)}/{name.capitalize()}.json"
        render = self._call_json if kind == "call" else self._message_json
        more = (page + 1) * size < len(items)
        return web.json_response(
            {
                name: [render(r) for r in chunk],
                "page": page,
                "page_size": size,
                "first_page_uri": f"{path}?PageSize={size}&Page=0",
                "next_page_uri": f"{path}?PageSize={size}&Page={page + 1}" if more else None,
                "previous_page_uri": None,
                "uri": f"{path}?PageSize={size}&Page={page}",
                "start": page * size,
                "end": page * size + len(chunk),
            }
        )

    async def _list_calls(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, "call")

    async def _list_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, "message")

    async def _fetch(self, request: web.Request, kind: str) -> web.StreamResponse:
        early, _ = await self._gate(request)
        if early is not None:
            return early
        store = self.calls if kind == "call" else self.messages
        r = store.get(request.match_info["sid"])
        if r is None:
            return self._error(404, 20404, "The requested resource was not found")
        return web.json_response(self._call_json(r) if kind == "call" else self._message_json(r))

    async def _fetch_call(self, request: web.Request) -> web.StreamResponse:
        return await self._fetch(request, "call")

    async def _fetch_message(self, request: web.Request) -> web.StreamResponse:
        return await self._fetch(request, "message")

    # ---- acting as Twilio toward nocd ------------------------------------------------------

    def creates(self, kind: str = "call") -> list[Recorded]:
        """Create requests (authorized) received for calls or messages."""
        suffix = "/Calls.json" if kind == "call" else "/Messages.json"
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(suffix)]

    def sign(self, url: str, params: dict[str, str]) -> str:
        """X-Twilio-Signature for a public URL and POST params, by the official validator."""
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    async def post_webhook(
        self, public: str, params: dict[str, str], signature: str | None = None
    ) -> tuple[int, str]:
        """POST signed params to nocd: signed for the public URL, sent to the local server."""
        assert self._session is not None and self.webhook_base is not None
        if not public.startswith(self.public_url):
            raise ValueError(f"{public} is not under the public URL {self.public_url}")
        local = self.webhook_base.rstrip("/") + public[len(self.public_url) :]
        sig = self.sign(public, params) if signature is None else signature
        self.last_post = (public, dict(params), sig)
        async with self._session.post(
            local, data=params, headers={"X-Twilio-Signature": sig}
        ) as resp:
            return resp.status, await resp.text()

    async def replay_last(self) -> tuple[int, str]:
        """Send the last webhook request again, byte for byte (a replay attack)."""
        public, params, sig = self.last_post
        return await self.post_webhook(public, params, sig)

    def _call_params(self, r: Resource, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": r.sid,
            "CallStatus": status,
            "Direction": "outbound-api",
            "From": str(r.params.get("From")),
            "To": str(r.params.get("To")),
            "Called": str(r.params.get("To")),
            "Caller": str(r.params.get("From")),
        }

    async def call_status(self, sid: str, status: str, **extra: str) -> tuple[int, str]:
        """Send the call's StatusCallback with `status` (ringing, completed, no-answer …)."""
        r = self.calls[sid]
        r.status = status
        url = str(r.params["StatusCallback"])
        return await self.post_webhook(url, {**self._call_params(r, status), **extra})

    async def message_status(self, sid: str, status: str) -> tuple[int, str]:
        """Send the message's StatusCallback (sent, delivered, undelivered, failed)."""
        r = self.messages[sid]
        r.status = status
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": r.sid,
            "SmsSid": r.sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": str(r.params.get("From")),
            "To": str(r.params.get("To")),
        }
        return await self.post_webhook(str(r.params["StatusCallback"]), params)

    async def answer(self, sid: str, answered_by: str | None = None) -> str:
        """Answer the call: fetch its TwiML from the Url, as Twilio does; returns the TwiML."""
        r = self.calls[sid]
        r.status = "in-progress"
        params = self._call_params(r, "in-progress")
        if answered_by:
            params["AnsweredBy"] = answered_by
        status, text = await self.post_webhook(str(r.params["Url"]), params)
        assert status == 200, (status, text)
        self.last_twiml[sid] = text
        return text

    def gather_action(self, sid: str) -> str:
        """The <Gather action> URL of the call's last TwiML."""
        root = ElementTree.fromstring(self.last_twiml[sid])
        gather = root.find("Gather")
        assert gather is not None, self.last_twiml[sid]
        return str(gather.get("action"))

    async def press(self, sid: str, digits: str, signature: str | None = None) -> tuple[int, str]:
        """Press keys during the <Gather>: POST Digits to its action URL."""
        r = self.calls[sid]
        params = {**self._call_params(r, "in-progress"), "Digits": digits, "FinishedOnKey": ""}
        status, text = await self.post_webhook(self.gather_action(sid), params, signature)
        if status == 200:
            self.last_twiml[sid] = text
        return status, text

    async def inbound_sms(
        self,
        from_: str,
        body: str,
        to: str = "+15550100",
        sid: str | None = None,
        signature: str | None = None,
    ) -> tuple[int, str]:
        """Deliver an inbound SMS to nocd's /twilio/sms webhook; returns (status, TwiML)."""
        msid = sid or "SM" + secrets.token_hex(16)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": msid,
            "SmsMessageSid": msid,
            "SmsSid": msid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
        }
        return await self.post_webhook(f"{self.public_url}/twilio/sms", params, signature)
