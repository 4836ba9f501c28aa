"""The transactional outbox: side effects recorded with the change that causes them, then sent.

`enqueue` runs inside the caller's transaction; `OutboxWorker` delivers due rows through the
handler registered for their `kind`, retrying with backoff on retryable `DeliveryError`s.
Delivery is at-least-once; keys make a second enqueue of the same operation a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite
import structlog

from nocd.clock import Clock
from nocd.delivery import DeliveryError
from nocd.store import Store

log = structlog.get_logger(__name__)

Handler = Callable[["OutboxItem"], Awaitable[str | None]]
"""Delivers one item and returns the provider's id (or None); raises DeliveryError."""

# The worker delivering from each store connection: `enqueue` wakes it, so a row recorded by
# any caller (pages, tickets, digests) goes out without waiting for the worker's poll.
_WAKERS: weakref.WeakKeyDictionary[aiosqlite.Connection, Callable[[], None]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One side effect to deliver."""

    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    incident_id: int | None
    attempts: int


async def enqueue(
    conn: aiosqlite.Connection,
    key: str,
    kind: str,
    payload: dict[str, Any],
    now: float,
    incident_id: int | None = None,
    not_before: float | None = None,
) -> bool:
    """Record a side effect inside the caller's transaction; False if the key already exists."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO outbox (key, kind, payload, incident_id, not_before, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (key, kind, json.dumps(payload, sort_keys=True), incident_id, not_before or now, now),
    )
    added = cur.rowcount == 1
    wake = _WAKERS.get(conn) if added else None
    if wake is not None:
        # Inside the caller's transaction: the worker's own transaction waits for its commit.
        wake()
    return added


def backoff(attempts: int, base: float = 5.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter (seconds before the next try)."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempts - 1)))


class OutboxWorker:
    """Delivers due outbox rows; one worker per daemon."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        max_attempts: int = 0,
        batch: int = 50,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._max_attempts = max_attempts  # 0 = retry forever: a page must not be dropped
        self._batch = batch
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._stranded: set[int] = set()  # rows left 'sending' because the store refused a write
        _WAKERS[store.reader] = self.wake
        self.delivered = 0
        self.failed = 0
        self.retried = 0

    def register(self, kind: str, handler: Handler) -> None:
        """Route rows of `kind` to `handler` (one handler per kind)."""
        if kind in self._handlers:
            raise ValueError(f"outbox kind {kind!r} registered twice")
        self._handlers[kind] = handler

    def has_handler(self, kind: str) -> bool:
        """True when a handler for `kind` is registered."""
        return kind in self._handlers

    def wake(self) -> None:
        """Look for due rows now (called after a transaction enqueued something)."""
        self._wake.set()

    async def recover(self) -> int:
        """At start-up, rows left 'sending' by a crash go back to pending (sent at least once)."""
        async with self._store.transaction() as conn:
            cur = await conn.execute(
                "UPDATE outbox SET state='pending', last_error='interrupted; in doubt' "
                "WHERE state='sending'"
            )
            return cur.rowcount

    async def run_once(self) -> int:
        """Deliver every row due now; returns how many were attempted."""
        now = self._clock.now()
        kinds = list(self._handlers)
        if not kinds:
            return 0
        if self._stranded:
            # Like recover() at start-up, without waiting for a restart: back to the queue,
            # in doubt (attempts > 1), so a send that did happen is reconciled, not repeated.
            ids = sorted(self._stranded)
            async with self._store.transaction() as conn:
                await conn.executemany(
                    "UPDATE outbox SET state='pending', last_error='store write refused; in doubt' "
                    "WHERE id=? AND state='sending'",
                    [(i,) for i in ids],
                )
            self._stranded.difference_update(ids)
        marks = ",".join("?" * len(kinds))
        async with self._store.transaction() as conn:
            async with conn.execute(
                f"SELECT id, key, kind, payload, incident_id, attempts FROM outbox "
                f"WHERE state='pending' AND not_before <= ? AND kind IN ({marks}) "
                f"ORDER BY not_before, id LIMIT ?",
                (now, *kinds, self._batch),
            ) as cur:
                rows = await cur.fetchall()
            items = [OutboxItem(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5] + 1) for r in rows]
            if items:
                await conn.executemany(
                    "UPDATE outbox SET state='sending', attempts=attempts+1 WHERE id=?",
                    [(i.id,) for i in items],
                )
        if items:
            await asyncio.gather(*(self._deliver(i) for i in items))
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            await self._deliver_once(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store refused the bookkeeping (disk full, I/O)
            # The row stays 'sending'; without this it would wait for the next restart.
            self._stranded.add(item.id)
            log.error(
                "outbox bookkeeping failed; the row will be retried",
                kind=item.kind,
                key=item.key,
                error=str(exc),
            )

    async def _deliver_once(self, item: OutboxItem) -> None:
        async with self._sem:
            handler = self._handlers[item.kind]
            try:
                provider_id = await handler(item)
            except asyncio.CancelledError:
                raise
            except DeliveryError as exc:
                await self._failed(item, exc.reason, exc.retryable, exc.retry_after)
                return
            except Exception as exc:  # noqa: BLE001 - a handler bug or store hiccup must not lose the row or stop delivery
                await self._failed(item, f"{type(exc).__name__}: {exc}", True, None)
                return
        now = self._clock.now()
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE outbox SET state='done', done_at=?, provider_id=?, last_error=NULL "
                "WHERE id=?",
                (now, provider_id, item.id),
            )
        self.delivered += 1
        log.info("outbox delivered", kind=item.kind, key=item.key, provider_id=provider_id)

    async def _failed(
        self, item: OutboxItem, reason: str, retryable: bool, retry_after: float | None
    ) -> None:
        now = self._clock.now()
        give_up = not retryable or (self._max_attempts and item.attempts >= self._max_attempts)
        async with self._store.transaction() as conn:
            if give_up:
                await conn.execute(
                    "UPDATE outbox SET state='failed', last_error=? WHERE id=?",
                    (reason[:500], item.id),
                )
            else:
                delay = retry_after if retry_after is not None else backoff(item.attempts)
                await conn.execute(
                    "UPDATE outbox SET state='pending', not_before=?, last_error=? WHERE id=?",
                    (now + delay, reason[:500], item.id),
                )
        if give_up:
            self.failed += 1
            log.error("outbox delivery failed", kind=item.kind, key=item.key, reason=reason)
        else:
            self.retried += 1
            log.warning("outbox delivery will retry", kind=item.kind, key=item.key, reason=reason)

    async def run(self, poll: float = 1.0) -> None:
        """Deliver forever: on wake-up or every `poll` seconds."""
        while True:
            # Cleared before the pass, not after: a wake-up arriving during the pass (a row
            # enqueued meanwhile) must start another pass at once, not wait for the poll.
            self._wake.clear()
            try:
                while await self.run_once() >= self._batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a handler bug or store hiccup must not lose the row or stop delivery
                log.error("outbox worker error", error=str(exc))
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (see scheduler).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()

    async def pending(self) -> int:
        """Rows not yet delivered."""
        async with self._store.reader.execute(
            "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','sending')"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
