"""The real daemon in-process on an injected clock, for provider-fault and time tests.

`World.start` runs `nocd.daemon.Daemon` with a FakeClock and the Twilio fake; `World.run`
moves injected time in small steps and wakes the outbox after each, as one real second per
injected second would (the daemon's loops poll every real second), so retries happen when
their backoff says and can be counted at the fakes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nocd.clock import FakeClock
from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from tests.fakes.twilio_fake import FakeTwilio
from tests.peers import free_port

SID = "AC" + "0" * 31 + "5"
TOKEN = "reliability-twilio-token-0123"
PUBLIC = "https://noc.example.com"
ALICE, BOB = "+15550101", "+15550102"


class JumpClock(FakeClock):
    """A FakeClock whose wall clock can also jump alone, as an NTP step or an operator does."""

    def jump(self, seconds: float) -> None:
        """Move only the wall clock (forward or back); the monotonic clock does not see it."""
        self._now += seconds


def dead_port() -> socket.socket:
    """A loopback port bound but not listening (connects are refused); keep it open.

    Held for the test, so no other socket can take the port and 'recover' the check.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


async def wait_for(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `pred` (bounded, real time) until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@dataclass
class World:
    """One daemon, its clock and the Twilio fake; `config(port, pbx_port)` gives the YAML."""

    tmp: Path
    config: Callable[[int, int], str]
    at: datetime
    clock: JumpClock = field(init=False)
    fake: FakeTwilio = field(init=False)
    daemon: Daemon = field(init=False)
    _pbx: socket.socket | None = None

    async def start(self) -> World:
        """Start the Twilio fake, then the daemon (its webhooks on an ephemeral port)."""
        self.clock = JumpClock(self.at.timestamp())
        port = free_port()
        self.fake = FakeTwilio(
            SID,
            TOKEN,
            now=self.clock.now,
            public_url=PUBLIC,
            webhook_base=f"http://127.0.0.1:{port}",
        )
        await self.fake.__aenter__()
        self._pbx = dead_port()
        try:
            cfg = load_text(self.config(port, int(self._pbx.getsockname()[1])), "reliability.yaml")
            daemon = Daemon(
                cfg,
                clock=self.clock,
                notifier=Notifier(environ={}),
                twilio_base_url=self.fake.base_url,
            )
            await daemon.start()
        except BaseException:
            await self.fake.__aexit__()
            self._pbx.close()
            raise
        self.daemon = daemon
        return self

    async def stop(self) -> None:
        """Stop the daemon and the fake."""
        await self.daemon.stop()
        await self.fake.__aexit__()
        if self._pbx is not None:
            self._pbx.close()

    async def run(
        self,
        seconds: float,
        step: float = 2.0,
        until: Callable[[], bool] | None = None,
        pause: float = 0.01,
    ) -> float:
        """Advance injected time by up to `seconds` in `step`s, waking the outbox after each;
        stop early when `until()` holds. Returns the injected seconds that passed."""
        assert self.daemon.outbox is not None
        passed = 0.0
        while passed < seconds and not (until is not None and until()):
            d = min(step, seconds - passed)  # land exactly on `seconds`
            self.clock.advance(d)
            passed += d
            self.daemon.outbox.wake()
            await asyncio.sleep(pause)
            # Injected time stands still while a delivery is in flight (a request hanging
            # until the client's timeout), as real time would barely move meanwhile.
            for _ in range(3000):  # at most 30 s of real time
                if not await self.rows("SELECT 1 FROM outbox WHERE state='sending' LIMIT 1"):
                    break
                await asyncio.sleep(pause)
        return passed

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the daemon's store."""
        assert self.daemon.store is not None
        async with self.daemon.store.reader.execute(sql, args) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def escalation(self) -> tuple[Any, ...] | None:
        """(incident_id, step, repeat, next_fire_at, state, started_at) of the only escalation."""
        rows = await self.rows(
            "SELECT incident_id, step, repeat, next_fire_at, state, started_at "
            "FROM paging_escalations"
        )
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    async def step_fired(self, step: int) -> tuple[float, str] | None:
        """(time, text) of the timeline event that fired escalation step `step` (0-based)."""
        rows = await self.rows(
            "SELECT at, text, data FROM timeline WHERE kind='page' AND text LIKE "
            "'escalation step%' ORDER BY id"
        )
        fired = [(float(at), str(text)) for at, text, _ in rows if f"step {step + 1}/" in text]
        assert len(fired) <= 1, f"step {step + 1} fired {len(fired)} times: {fired}"
        return fired[0] if fired else None

    def calls_to(self, number: str) -> list[str]:
        """SIDs of calls the fake created to `number`."""
        return [sid for sid, c in self.fake.calls.items() if c.params["To"] == number]

    def sms_to(self, number: str) -> list[str]:
        """SIDs of messages the fake created to `number`."""
        return [sid for sid, m in self.fake.messages.items() if m.params["To"] == number]

    def requests_for(self, number: str) -> list[float]:
        """Injected times of every REST request (create or reconcile) about `number`."""
        return [
            r.at
            for r in self.fake.requests
            if r.form.get("To") == number or r.query.get("To") == number
        ]
