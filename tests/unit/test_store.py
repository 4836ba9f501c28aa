"""The SQLite store: migrations once, schema_version, WAL + synchronous=FULL, durable state."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from checks import tcp
from nocd.clock import FakeClock
from nocd.metrics import Metrics
from nocd.model import FailureClass, Observation, Severity
from nocd.pipeline import Pipeline
from nocd.state import CheckState
from nocd.store import Store, StoreError
from nocd.store.sqlite import migrations


async def test_migrations_are_applied_once(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "nocd.db"  # the parent directory is created
    expected = [(n, name) for n, name, _ in migrations()]
    assert expected[:2] == [(1, "0001_core.sql"), (2, "0002_incidents.sql")]
    store = await Store.open(db)
    async with store.reader.execute("SELECT version, name, applied_at FROM schema_version") as cur:
        first = [tuple(r) for r in await cur.fetchall()]
    assert [(v, n) for v, n, _ in first] == expected
    assert await store.schema_version() == expected[-1][0]
    await store.close()

    store = await Store.open(db)  # reopening applies nothing again (no duplicate-table error)
    async with store.reader.execute("SELECT version, name, applied_at FROM schema_version") as cur:
        again = [tuple(r) for r in await cur.fetchall()]
    assert again == first
    await store.close()


async def test_wal_and_full_sync(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "nocd.db")
    try:
        async with store.reader.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"  # type: ignore[index]
        async with store.reader.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone())[0] == 2  # type: ignore[index]  # 2 = FULL
        async with store.reader.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1  # type: ignore[index]
        assert await store.integrity_ok()
    finally:
        await store.close()


async def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "nocd.db")
    try:
        async with store.transaction() as conn:
            await conn.execute(
                "INSERT INTO check_state VALUES (?, ?, ?)", ("kept", CheckState().to_json(), 1.0)
            )
        with pytest.raises(RuntimeError):
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO check_state VALUES (?, ?, ?)", ("lost", "{}", 1.0))
                raise RuntimeError("handler failed mid-transaction")
        async with store.reader.execute("SELECT check_name FROM check_state") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["kept"]
    finally:
        await store.close()


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError):
        await Store.open(tmp_path / "dir.db")


async def test_check_state_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "nocd.db"
    clock = FakeClock()
    cfg = tcp.Config(name="pbx", type="tcp", target="pbx.example.com:5060", retries=2)
    store = await Store.open(db)
    pipe = Pipeline(store, clock, Metrics(CollectorRegistry()))
    pipe.set_checks([cfg], (20, 30.0, 25.0))
    down = Observation.failed(FailureClass.REFUSED, "connection refused")
    pipe.on_result(cfg, down, 0.0)
    clock.advance(10)
    pipe.on_result(cfg, down, 0.0)
    assert pipe.states["pbx"].hard is Severity.CRITICAL
    assert await pipe.flush() == 1  # one DOWN transition handed on
    await store.close()

    store = await Store.open(db)
    try:
        again = Pipeline(store, clock, Metrics(CollectorRegistry()))
        assert await again.load() == 1
        assert again.states["pbx"] == pipe.states["pbx"]
        assert again.states["pbx"].since == clock.now()
    finally:
        await store.close()


async def test_unreadable_saved_state_is_skipped(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "nocd.db")
    try:
        async with store.transaction() as conn:
            await conn.executemany(
                "INSERT INTO check_state VALUES (?, ?, ?)",
                [("good", CheckState().to_json(), 1.0), ("bad", "{not json", 1.0)],
            )
        pipe = Pipeline(store, FakeClock(), Metrics(CollectorRegistry()))
        await pipe.load()
        assert set(pipe.states) == {"good"}
    finally:
        await store.close()


async def test_a_writer_cancelled_mid_begin_does_not_wedge_later_writes(tmp_path: Path) -> None:
    """Cancelling a writer at any await of BEGIN/COMMIT leaves later transactions working."""
    store = await Store.open(tmp_path / "t.db")
    try:
        await store.reader.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")

        async def write(n: int) -> None:
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (?)", (n,))

        for i in range(60):
            task = asyncio.create_task(write(-1))
            for _ in range(i % 6):  # cancel at a different await each round
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await write(i)  # must not fail with "cannot start a transaction within a transaction"
        async with store.reader.execute("SELECT COUNT(*) FROM t WHERE n >= 0") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == 60
    finally:
        await store.close()
