"""The outbox: idempotent enqueue, retry with backoff, permanent failure, crash recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nocd.clock import FakeClock
from nocd.delivery import DeliveryError
from nocd.outbox import OutboxItem, OutboxWorker, backoff, enqueue
from nocd.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "nocd.db")
    yield s
    await s.close()


async def rows(store: Store) -> list[dict[str, Any]]:
    async with store.reader.execute(
        "SELECT key, kind, state, attempts, not_before, provider_id, last_error, payload "
        "FROM outbox ORDER BY id"
    ) as cur:
        return [dict(r) for r in await cur.fetchall()]


async def put(store: Store, clock: FakeClock, key: str, kind: str = "notify") -> bool:
    async with store.transaction() as conn:
        return await enqueue(conn, key, kind, {"to": "+15550100"}, clock.now())


async def test_enqueue_is_idempotent_by_key(store: Store) -> None:
    clock = FakeClock()
    assert await put(store, clock, "incident:1:open-ticket")
    assert not await put(store, clock, "incident:1:open-ticket")
    assert await put(store, clock, "incident:1:page:1")
    assert [r["key"] for r in await rows(store)] == ["incident:1:open-ticket", "incident:1:page:1"]


async def test_enqueue_rolls_back_with_its_transaction(store: Store) -> None:
    clock = FakeClock()
    with pytest.raises(RuntimeError):
        async with store.transaction() as conn:
            await enqueue(conn, "incident:2:page", "notify", {}, clock.now())
            raise RuntimeError("the state change failed")
    assert await rows(store) == []


async def test_delivers_and_records_provider_id(store: Store) -> None:
    clock = FakeClock()
    seen: list[OutboxItem] = []

    async def send(item: OutboxItem) -> str:
        seen.append(item)
        return "CA0001"

    worker = OutboxWorker(store, clock)
    worker.register("notify", send)
    await put(store, clock, "k1")
    assert await worker.run_once() == 1
    assert seen[0].payload == {"to": "+15550100"} and seen[0].attempts == 1
    [row] = await rows(store)
    assert (row["state"], row["provider_id"], row["attempts"]) == ("done", "CA0001", 1)
    assert await worker.run_once() == 0  # done rows are never sent again
    assert worker.delivered == 1


async def test_retryable_error_backs_off_then_succeeds(store: Store) -> None:
    clock = FakeClock()
    attempts = 0

    async def flaky(item: OutboxItem) -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise DeliveryError("HTTP 503 from provider", retryable=True)
        return "SM0001"

    worker = OutboxWorker(store, clock)
    worker.register("notify", flaky)
    await put(store, clock, "k1")
    await worker.run_once()
    [row] = await rows(store)
    assert (row["state"], row["attempts"], row["last_error"]) == (
        "pending",
        1,
        "HTTP 503 from provider",
    )
    first_delay = row["not_before"] - clock.now()
    assert 2.5 <= first_delay <= 5.0  # backoff(1): full jitter in [base/2, base]
    assert await worker.run_once() == 0  # not due yet: no hammering
    clock.advance(first_delay)
    await worker.run_once()
    [row] = await rows(store)
    assert row["attempts"] == 2 and row["state"] == "pending"
    assert 2.5 <= row["not_before"] - clock.now() <= 10.0  # backoff(2) ≤ 2 × base
    clock.advance(10)
    await worker.run_once()
    [row] = await rows(store)
    assert (row["state"], row["attempts"], row["provider_id"]) == ("done", 3, "SM0001")
    assert worker.retried == 2 and worker.delivered == 1


async def test_retry_after_is_honoured(store: Store) -> None:
    clock = FakeClock()

    async def limited(item: OutboxItem) -> str:
        raise DeliveryError("429 Too Many Requests", retryable=True, retry_after=42.0)

    worker = OutboxWorker(store, clock)
    worker.register("notify", limited)
    await put(store, clock, "k1")
    await worker.run_once()
    [row] = await rows(store)
    assert row["not_before"] == pytest.approx(clock.now() + 42.0)


async def test_permanent_failure_is_marked_failed(store: Store) -> None:
    clock = FakeClock()

    async def rejected(item: OutboxItem) -> str:
        raise DeliveryError("21211 invalid 'To' number", retryable=False)

    worker = OutboxWorker(store, clock)
    worker.register("notify", rejected)
    await put(store, clock, "k1")
    await worker.run_once()
    [row] = await rows(store)
    assert (row["state"], row["last_error"]) == ("failed", "21211 invalid 'To' number")
    clock.advance(3600)
    assert await worker.run_once() == 0
    assert worker.failed == 1


async def test_unexpected_exception_is_retried(store: Store) -> None:
    clock = FakeClock()

    async def buggy(item: OutboxItem) -> str:
        raise KeyError("sid")

    worker = OutboxWorker(store, clock)
    worker.register("notify", buggy)
    await put(store, clock, "k1")
    await worker.run_once()
    [row] = await rows(store)
    assert row["state"] == "pending" and row["last_error"] == "KeyError: 'sid'"


async def test_max_attempts_gives_up(store: Store) -> None:
    clock = FakeClock()

    async def down(item: OutboxItem) -> str:
        raise DeliveryError("connection refused", retryable=True)

    worker = OutboxWorker(store, clock, max_attempts=2)
    worker.register("notify", down)
    await put(store, clock, "k1")
    await worker.run_once()
    clock.advance(10)
    await worker.run_once()
    [row] = await rows(store)
    assert (row["state"], row["attempts"]) == ("failed", 2)


async def test_sending_rows_are_recovered_after_a_crash(store: Store) -> None:
    clock = FakeClock()
    await put(store, clock, "in-flight")
    await put(store, clock, "done")
    async with store.transaction() as conn:
        # What a crash between "mark sending" and "mark done" leaves behind.
        await conn.execute("UPDATE outbox SET state='sending', attempts=1 WHERE key='in-flight'")
        await conn.execute("UPDATE outbox SET state='done' WHERE key='done'")
    worker = OutboxWorker(store, clock)
    assert await worker.pending() == 1
    assert await worker.recover() == 1
    by_key = {r["key"]: r for r in await rows(store)}
    assert by_key["in-flight"]["state"] == "pending"
    assert by_key["in-flight"]["last_error"] == "interrupted; in doubt"
    assert by_key["done"]["state"] == "done"
    sent: list[OutboxItem] = []

    async def send(item: OutboxItem) -> str:
        sent.append(item)
        return "id"

    worker.register("notify", send)
    await worker.run_once()
    assert [i.key for i in sent] == ["in-flight"]
    assert sent[0].attempts == 2  # the handler can tell a resend from a first send


async def test_rows_of_unregistered_kinds_wait(store: Store) -> None:
    clock = FakeClock()
    await put(store, clock, "t1", kind="ticket:webhook")
    worker = OutboxWorker(store, clock)

    async def send(item: OutboxItem) -> str:
        return "x"

    worker.register("notify", send)
    assert await worker.run_once() == 0
    assert (await rows(store))[0]["state"] == "pending"
    with pytest.raises(ValueError):
        worker.register("notify", send)


@pytest.mark.parametrize("attempts", [1, 2, 5, 20])
def test_backoff_is_bounded(attempts: int) -> None:
    for _ in range(50):
        d = backoff(attempts, base=5.0, cap=300.0)
        assert 2.5 <= d <= min(300.0, 5.0 * 2 ** (attempts - 1))
