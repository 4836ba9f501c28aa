"""The SQLite store: one writer connection, serialized transactions, numbered migrations.

A PostgreSQL store can replace this class: callers only use `transaction()`, `read()` and
plain SQL through the repository modules (incidents, outbox, tickets, paging).
The store also says whether it can write: a transaction refused for lack of space, a
read-only file or an I/O error sets `writable` False (listeners are told), and the next
commit that succeeds sets it back; `on_rollback` lets a caller undo in-memory changes made
for a transaction that did not commit.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import aiosqlite
import structlog

log = structlog.get_logger(__name__)

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# SQLite primary result codes that mean "the database cannot be written", not a bug.
_UNWRITABLE = {13: "SQLITE_FULL", 8: "SQLITE_READONLY", 10: "SQLITE_IOERR", 14: "SQLITE_CANTOPEN"}
_UNWRITABLE_TEXT = ("disk is full", "readonly database", "disk i/o error", "unable to open")


def unwritable_reason(exc: BaseException) -> str | None:
    """SQLite's reason when `exc` means the store cannot write (full, read-only, I/O), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.Error):
            code = getattr(seen, "sqlite_errorcode", None)
            if (code is not None and code & 0xFF in _UNWRITABLE) or any(
                t in str(seen).lower() for t in _UNWRITABLE_TEXT
            ):
                return str(seen)
        seen = seen.__cause__
    return None


def _try_open(path: str) -> None:
    """Open and close `path` with sqlite3 (raises sqlite3.Error if it cannot be opened)."""
    import sqlite3 as _sqlite3  # local: keeps this helper independent of the module's imports

    _sqlite3.connect(path).close()


class StoreError(Exception):
    """The store cannot be opened or written (disk full, read-only, corrupt)."""


def migrations() -> list[tuple[int, str, str]]:
    """The packaged migrations as (number, name, sql), in order."""
    out = []
    for entry in resources.files("nocd.migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    numbers = [n for n, _, _ in out]
    if len(set(numbers)) != len(numbers):
        raise StoreError(f"duplicate migration numbers: {numbers}")
    return out


class Store:
    """An open SQLite database with a single writer."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path
        self._write_lock = asyncio.Lock()
        self.writable = True
        self.write_error: str | None = None  # SQLite's reason while not writable
        self.refused = 0  # transactions refused because the store could not write
        self._listeners: list[Callable[[bool, str | None], None]] = []
        self._undo: list[Callable[[], None]] = []
        self._done: list[Callable[[], None]] = []

    def on_writable_change(self, fn: Callable[[bool, str | None], None]) -> None:
        """Call `fn(writable, reason)` whenever the store stops or starts accepting writes."""
        self._listeners.append(fn)

    def on_rollback(self, fn: Callable[[], None]) -> None:
        """Inside a transaction: call `fn` if it rolls back (undo in-memory changes)."""
        self._undo.append(fn)

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Inside a transaction: call `fn` once it has committed."""
        self._done.append(fn)

    def _set_writable(self, writable: bool, reason: str | None) -> None:
        if writable == self.writable:
            return
        self.writable, self.write_error = writable, reason
        if writable:
            log.warning("state database accepts writes again")
        else:
            log.error("state database refuses writes", reason=reason, path=self.path)
        for fn in self._listeners:
            fn(writable, reason)

    def _rolled_back(self, exc: BaseException) -> None:
        undo, self._undo, self._done = self._undo, [], []
        for fn in reversed(undo):
            fn()
        reason = unwritable_reason(exc)
        if reason is not None:
            self.refused += 1
            self._set_writable(False, reason)

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate the database at `path` (":memory:" works)."""
        p = str(path)
        if p != ":memory:":
            Path(p).parent.mkdir(parents=True, exist_ok=True)
        try:
            # Try the file with plain sqlite3 first: when aiosqlite's own connect fails it
            # leaves its worker thread to answer a future on a loop that may be closed by
            # then (an unhandled thread exception), so most failures must not reach it.
            await asyncio.to_thread(_try_open, p)
            db = await aiosqlite.connect(p, isolation_level=None)
        except Exception as exc:
            raise StoreError(f"cannot open state database {p}: {exc}") from exc
        db.row_factory = aiosqlite.Row
        store = cls(db, p)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await store._migrate()
        except Exception as exc:
            await db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot initialise state database {p}: {exc}") from exc
        return store

    async def _migrate(self) -> None:
        db = self._db
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for number, name, sql in migrations():
            if number <= current:
                continue
            # executescript commits first; wrap the migration and its record in one transaction.
            await db.executescript(
                "BEGIN IMMEDIATE;\n"
                + sql
                + f"\nINSERT INTO schema_version VALUES ({number}, '{name}', datetime('now'));\nCOMMIT;"
            )
            log.info("store migrated", version=number, migration=name)

    async def schema_version(self) -> int:
        """The highest applied migration number."""
        async with self._db.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE, first closing a transaction a cancelled writer left open.

        Cancelling a task does not stop its statement in aiosqlite's thread: a writer
        cancelled while its BEGIN was queued returns without a ROLLBACK, and every later
        BEGIN would then fail. The thread runs statements in order, so by the time ours
        fails that way, the abandoned transaction holds nothing anyone is still writing.
        """
        try:
            await self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "within a transaction" not in str(exc):
                raise
            log.warning("closing a transaction left open by a cancelled writer")
            await self._db.execute("ROLLBACK")
            await self._db.execute("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT), serialized among writers."""
        async with self._write_lock:
            self._undo, self._done = [], []
            try:
                await self._begin()  # read-only: refused here
            except Exception as exc:
                self._rolled_back(exc)
                raise StoreError(f"cannot begin a write: {exc}") from exc
            try:
                yield self._db
            except BaseException as exc:
                try:
                    await self._db.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the original error matters more than the rollback
                    pass
                self._rolled_back(exc)
                raise
            try:
                await self._db.execute("COMMIT")
            except Exception as exc:
                try:
                    await self._db.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the original error matters more than the rollback
                    pass
                self._rolled_back(exc)
                raise StoreError(f"commit failed: {exc}") from exc
            done, self._undo, self._done = self._done, [], []
            for fn in done:
                fn()
            self._set_writable(True, None)

    @property
    def reader(self) -> aiosqlite.Connection:
        """The connection, for reads outside a transaction (autocommit)."""
        return self._db

    async def integrity_ok(self) -> bool:
        """PRAGMA integrity_check == ok."""
        async with self._db.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        return bool(row and row[0] == "ok")

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        await self._db.close()
