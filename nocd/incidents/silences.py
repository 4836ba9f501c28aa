"""Run-time silences (planned work announced through the API/CLI/dashboard): create, list, expire.

Rows live in the `silences` table; after every change the engine reloads its active set
(`IncidentEngine.load_silences`) in the same transaction, so the next judgement sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import aiosqlite
from pydantic import Field, field_validator, model_validator

from nocd.config import Config
from nocd.duration import Duration
from nocd.incidents.config import MaintenanceMatch
from nocd.incidents.engine import IncidentEngine
from nocd.inventory import Strict
from nocd.store import Store

MAX_LENGTH = 31 * 86400.0  # a month: longer "silences" are config maintenance windows


@dataclass(frozen=True, slots=True)
class StoredSilence:
    """One row of the `silences` table."""

    id: int
    name: str
    match: MaintenanceMatch
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    public: bool
    expired_at: float | None

    def active(self, now: float) -> bool:
        """In force at `now`: started, not ended, not expired by hand."""
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def state(self, now: float) -> str:
        """pending, active or expired."""
        if self.expired_at is not None or now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"


class SilenceRequest(Strict):
    """What an operator asks for: a matcher and a time span (end, or duration from start)."""

    name: str = Field(min_length=1, max_length=120)
    match: MaintenanceMatch
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration: Duration | None = None
    comment: str = Field("", max_length=2000)
    public: bool = False

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("times need a zone offset, e.g. 2026-12-01T02:00:00Z")
        return v

    @model_validator(mode="after")
    def _span(self) -> SilenceRequest:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give exactly one of ends_at or duration")
        m = self.match
        if not (m.checks or m.sites or m.customers or m.labels):
            # An empty matcher would mute everything; make that an explicit config window.
            raise ValueError("match needs at least one of checks, sites, customers, labels")
        return self

    def span(self, now: float) -> tuple[float, float]:
        """(starts_at, ends_at) in epoch seconds; starts now when no start is given."""
        start = self.starts_at.timestamp() if self.starts_at else now
        end = self.ends_at.timestamp() if self.ends_at else start + (self.duration or 0.0)
        if end <= now:
            raise ValueError("the silence would already be over")
        if end <= start:
            raise ValueError("the silence must end after it starts")
        if end - start > MAX_LENGTH:
            raise ValueError("a silence lasts at most 31 days; use a maintenance window")
        return start, end


def unknown_references(match: MaintenanceMatch, config: Config) -> list[str]:
    """Selectors naming checks, sites or customers the config does not know (typos)."""
    out = [f"check {c!r}" for c in match.checks if c not in config.checks_by_name]
    out += [f"site {s!r}" for s in match.sites if s not in config.sites]
    out += [f"customer {c!r}" for c in match.customers if c not in config.customers]
    return out


_COLS = "id, name, matcher, starts_at, ends_at, created_by, comment, public, expired_at"


def _row(r: aiosqlite.Row) -> StoredSilence:
    return StoredSilence(
        r[0],
        r[1],
        MaintenanceMatch.model_validate(json.loads(r[2])),
        r[3],
        r[4],
        r[5],
        r[6],
        bool(r[7]),
        r[8],
    )


async def listing(
    conn: aiosqlite.Connection, now: float, include_expired: bool = False, limit: int = 200
) -> list[StoredSilence]:
    """Silences not yet over (or also the expired ones, newest first)."""
    where = "" if include_expired else "WHERE expired_at IS NULL AND ends_at > ?"
    args: tuple[float | int, ...] = (limit,) if include_expired else (now, limit)
    async with conn.execute(
        f"SELECT {_COLS} FROM silences {where} ORDER BY starts_at DESC, id DESC LIMIT ?", args
    ) as cur:
        return [_row(r) for r in await cur.fetchall()]


async def get(conn: aiosqlite.Connection, silence_id: int) -> StoredSilence | None:
    """One silence by id."""
    async with conn.execute(f"SELECT {_COLS} FROM silences WHERE id=?", (silence_id,)) as cur:
        row = await cur.fetchone()
    return _row(row) if row else None


async def create(
    store: Store, engine: IncidentEngine, req: SilenceRequest, by: str, now: float
) -> StoredSilence:
    """Store a new silence and make the engine see it (ValueError on a bad span)."""
    start, end = req.span(now)
    matcher = req.match.model_dump_json()
    async with store.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO silences (name, matcher, starts_at, ends_at, created_by, comment, public) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (req.name, matcher, start, end, by, req.comment, int(req.public)),
        )
        sid = int(cur.lastrowid or 0)
        await engine.load_silences(conn)
        made = await get(conn, sid)
    assert made is not None
    return made


async def expire(
    store: Store, engine: IncidentEngine, silence_id: int, now: float
) -> tuple[StoredSilence | None, bool]:
    """End a silence now: (the silence or None when unknown, whether anything changed)."""
    async with store.transaction() as conn:
        found = await get(conn, silence_id)
        if found is None or found.expired_at is not None or found.ends_at <= now:
            return found, False
        await conn.execute("UPDATE silences SET expired_at=? WHERE id=?", (now, silence_id))
        await engine.load_silences(conn)
        after = await get(conn, silence_id)
    return after, True
