"""A real HTTP receiver for the webhook ticket sink: verifies signatures, drops repeats."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    """One accepted delivery."""

    key: str
    event: str
    body: dict[str, Any]
    raw: bytes
    signature: str


@dataclass
class WebhookReceiver:
    """Accepts POST /hook signed with `secret`; `fail_next` queues error replies.

    For an outage of any length: `fail_all` answers every request with (status, Retry-After)
    and `hang` holds every request unanswered (the sender times out), until cleared.
    """

    secret: bytes
    accepted: list[Received] = field(default_factory=list)
    duplicates: int = 0
    forged: int = 0
    attempts: int = 0
    fail_next: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After)
    fail_all: tuple[int, str | None] | None = None
    hang: bool = False
    _runner: web.AppRunner | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        """Check the signature, then record the delivery once per idempotency key."""
        self.attempts += 1
        while self.hang:  # cleared by the test or by stop()
            await asyncio.sleep(0.05)
        failure = self.fail_next.pop(0) if self.fail_next else self.fail_all
        if failure is not None:
            status, after = failure
            headers = {"Retry-After": after} if after else {}
            return web.Response(status=status, text="try later", headers=headers)
        raw = await request.read()
        want = "sha256=" + hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Nocd-Signature", ""), want):
            self.forged += 1
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers.get("X-Nocd-Idempotency-Key", "")
        if any(r.key == key for r in self.accepted):
            self.duplicates += 1
        else:
            body = json.loads(raw)
            event = request.headers.get("X-Nocd-Event", "")
            sig = request.headers["X-Nocd-Signature"]
            self.accepted.append(Received(key, event, body, raw, sig))
        fp = json.loads(raw)["ticket"]["fingerprint"]
        return web.json_response({"id": f"HD-{fp}"}, status=201)

    async def start(self) -> str:
        """Listen on 127.0.0.1 (ephemeral port); returns the hook URL."""
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def stop(self) -> None:
        """Stop listening."""
        self.hang = False
        if self._runner is not None:
            await self._runner.cleanup()
