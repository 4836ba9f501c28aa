"""The store says when it cannot write, and runs undo/commit hooks with its transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nocd.store import Store, StoreError
from nocd.store.sqlite import unwritable_reason


async def test_read_only_refusal_flips_writable_and_a_commit_flips_it_back(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "s.db")
    seen: list[tuple[bool, str | None]] = []
    store.on_writable_change(lambda ok, why: seen.append((ok, why)))
    try:
        await store.reader.execute("PRAGMA query_only=1")  # SQLite refuses every write
        with pytest.raises(StoreError, match="readonly"):
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO schema_version VALUES (99, 'x', 'now')")
        assert not store.writable and store.refused == 1
        assert store.write_error is not None and "readonly" in store.write_error
        assert seen == [(False, store.write_error)]
        async with store.reader.execute("SELECT COUNT(*) FROM schema_version") as cur:
            assert (await cur.fetchone()) is not None  # reads still work
        await store.reader.execute("PRAGMA query_only=0")
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO schema_version VALUES (99, 'x', 'now')")
        assert store.writable and store.write_error is None
        assert seen[-1] == (True, None) and len(seen) == 2
    finally:
        await store.close()


async def test_a_bug_in_the_body_rolls_back_without_calling_the_store_unwritable(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "s.db")
    log: list[str] = []
    try:
        with pytest.raises(ValueError):
            async with store.transaction() as conn:
                store.on_rollback(lambda: log.append("undo 1"))
                store.on_rollback(lambda: log.append("undo 2"))
                store.on_commit(lambda: log.append("committed"))
                await conn.execute("INSERT INTO schema_version VALUES (98, 'y', 'now')")
                raise ValueError("a bug")
        assert log == ["undo 2", "undo 1"]  # newest first, as savepoints unwind
        assert store.writable and store.refused == 0
        async with store.transaction() as conn:
            store.on_rollback(lambda: log.append("undo 3"))
            store.on_commit(lambda: log.append("committed"))
        assert log[-1] == "committed" and "undo 3" not in log
    finally:
        await store.close()


def test_unwritable_reasons() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    assert unwritable_reason(full) == "database or disk is full"
    wrapped = StoreError("commit failed")
    wrapped.__cause__ = sqlite3.OperationalError("disk I/O error")
    assert unwritable_reason(wrapped) == "disk I/O error"
    assert unwritable_reason(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert unwritable_reason(ValueError("database or disk is full")) is None  # not SQLite's
