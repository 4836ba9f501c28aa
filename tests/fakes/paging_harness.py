"""Paging test harness: real store, pager, outbox worker, webhooks app and the Twilio fake.

Stands in for the daemon at the paging level: incidents are inserted directly, the pager is
ticked with a FakeClock, and `FakeAcker` does what the lead's incidents engine does on an ack.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from nocd.calendar_config import CalendarConfig
from nocd.clock import FakeClock
from nocd.incidents.model import (
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentState,
    load,
)
from nocd.incidents.timeline import TimelineEvent, add_event, events
from nocd.model import Severity
from nocd.outbox import OutboxWorker
from nocd.store import Store
from paging.acks import IncidentActionResult
from paging.config import PagingConfig
from paging.notifiers import Notifier, build_notifier
from paging.pager import Pager
from paging.webhooks import routes
from tests.fakes.twilio_fake import FakeTwilio

PUBLIC_URL = "https://noc.example.com"


class FakeAcker:
    """Acks/resolves the incidents row and tells the pager, as the lead's engine will."""

    def __init__(self, store: Store, pager: Pager, clock: FakeClock) -> None:
        self.store, self.pager, self.clock = store, pager, clock
        self.calls: list[tuple[str, str, str, str]] = []

    async def _act(self, action: str, ref: str, by: str, via: str) -> IncidentActionResult:
        self.calls.append((action, ref, by, via))
        now = self.clock.now()
        async with self.store.transaction() as conn:
            inc = await load(conn, ref)
            if inc is None:
                return IncidentActionResult(False, ref, message="unknown incident")
            target = IncidentState.ACKNOWLEDGED if action == "ack" else IncidentState.RESOLVED
            if inc.state is IncidentState.RESOLVED or inc.state is target:
                return IncidentActionResult(True, inc.code, inc.state.value, False)
            if action == "ack":
                await conn.execute(
                    "UPDATE incidents SET state='acknowledged', acked_at=?, acked_by=? WHERE id=?",
                    (now, by, inc.id),
                )
                kind = IncidentEventKind.ACKNOWLEDGED
            else:
                await conn.execute(
                    "UPDATE incidents SET state='resolved', resolved_at=?, resolved_by=? "
                    "WHERE id=?",
                    (now, by, inc.id),
                )
                kind = IncidentEventKind.RESOLVED
            await add_event(conn, inc.id, now, kind.value, f"{kind.value} by {by} via {via}")
            fresh = await load(conn, inc.id)
            assert fresh is not None
            await self.pager.on_incident(conn, fresh, IncidentEvent(kind, now, by, via))
            return IncidentActionResult(True, inc.code, fresh.state.value, True)

    async def ack(self, ref: str, by: str, via: str) -> IncidentActionResult:
        """Acknowledge."""
        return await self._act("ack", ref, by, via)

    async def resolve(self, ref: str, by: str, via: str) -> IncidentActionResult:
        """Resolve."""
        return await self._act("resolve", ref, by, via)


class Harness:
    """Everything the paging scenarios need, wired like the daemon wires it."""

    def __init__(
        self,
        tmp: Path,
        paging: PagingConfig,
        calendars: Mapping[str, CalendarConfig],
        clock: FakeClock,
        fake: FakeTwilio | None,
        notifier: Notifier | None = None,
    ) -> None:
        self.tmp, self.paging, self.calendars, self.clock, self.fake = (
            tmp,
            paging,
            calendars,
            clock,
            fake,
        )
        self._notifier = notifier
        self._runner: web.AppRunner | None = None
        self._codes = 0

    async def start(self) -> Harness:
        """Open the store, build pager/worker/acker and serve the webhooks on 127.0.0.1."""
        self.store = await Store.open(self.tmp / "nocd.db")
        base = self.fake.base_url if self.fake else None
        self.notifier = self._notifier or build_notifier(self.paging.provider, base_url=base)
        self.pager = Pager(
            self.store,
            self.paging,
            self.calendars,
            self.notifier,
            self.clock,
            public_url=PUBLIC_URL,
        )
        self.worker = OutboxWorker(self.store, self.clock)
        self.worker.register("notify", self.pager.deliver_notify)
        self.worker.register("digest", self.pager.deliver_digest)
        self.acker = FakeAcker(self.store, self.pager, self.clock)
        app = web.Application()
        app.add_routes(routes(self.pager, self.acker))
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.webhook_base = f"http://127.0.0.1:{self.port}"
        if self.fake is not None:
            self.fake.webhook_base = self.webhook_base
        return self

    async def close(self) -> None:
        """Stop serving and close everything."""
        if self._runner is not None:
            await self._runner.cleanup()
        await self.notifier.close()
        await self.store.close()

    async def restart(self) -> None:
        """Simulate a daemon restart: new pager, worker and notifier over the same database."""
        await self.close()
        self._notifier = None
        self._runner = None
        await self.start()
        await self.worker.recover()

    async def open_incident(
        self,
        severity: Severity = Severity.CRITICAL,
        site: str | None = "main-street",
        customer: str | None = None,
        title: str = "PBX down at site Main Street",
        code: str | None = None,
    ) -> Incident:
        """Insert an open incident and tell the pager (as the incidents engine would)."""
        self._codes += 1
        code = code or f"K{self._codes}Q"
        now = self.clock.now()
        async with self.store.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
                "opened_at) VALUES (?, ?, ?, ?, ?, 'triggered', ?, ?)",
                (code, f"site:{site}:{code}", site, customer, severity.value, title, now),
            )
            inc = await load(conn, int(cur.lastrowid or 0))
            assert inc is not None
            await add_event(conn, inc.id, now, "opened", title)
            await self.pager.on_incident(conn, inc, IncidentEvent(IncidentEventKind.OPENED, now))
        return inc

    async def resolve_by_monitor(self, inc: Incident) -> None:
        """The failure recovered: resolve the incident and tell the pager."""
        now = self.clock.now()
        async with self.store.transaction() as conn:
            await conn.execute(
                "UPDATE incidents SET state='resolved', resolved_at=?, resolved_by='nocd' "
                "WHERE id=?",
                (now, inc.id),
            )
            fresh = await load(conn, inc.id)
            assert fresh is not None
            await self.pager.on_incident(
                conn, fresh, IncidentEvent(IncidentEventKind.RESOLVED, now)
            )

    async def tick(self, seconds: float = 0.0, step: float = 1.0) -> None:
        """Run the daemon's per-second loop for `seconds` of fake time (at least once)."""
        elapsed = 0.0
        while True:
            await self.pager.run_due(self.clock.now())
            while await self.worker.run_once():
                pass
            if elapsed >= seconds:
                return
            self.clock.advance(step)
            elapsed += step

    async def timeline(self, inc: Incident) -> list[TimelineEvent]:
        """The incident's timeline."""
        return await events(self.store.reader, inc.id)

    async def state(self, inc: Incident) -> IncidentState:
        """The incident's current state."""
        fresh = await load(self.store.reader, inc.id)
        assert fresh is not None
        return fresh.state

    async def escalation(self, inc: Incident) -> tuple[Any, ...] | None:
        """(step, repeat, next_fire_at, state) of the incident's escalation."""
        async with self.store.reader.execute(
            "SELECT step, repeat, next_fire_at, state FROM paging_escalations WHERE incident_id=?",
            (inc.id,),
        ) as cur:
            row = await cur.fetchone()
        return tuple(row) if row else None
