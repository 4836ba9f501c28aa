"""Clocks: the only place nocd reads time, so tests can inject a fake one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time (epoch seconds) for records, monotonic time for intervals."""

    def now(self) -> float:
        """Epoch seconds (UTC)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for measuring and scheduling."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Epoch seconds from the system clock."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand; both readings advance together."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._mono = 1000.0

    def now(self) -> float:
        """Current fake epoch seconds."""
        return self._now

    def monotonic(self) -> float:
        """Current fake monotonic seconds."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += seconds
        self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump the wall clock to `when` (monotonic moves by the same delta if forward)."""
        target = when.timestamp()
        if target > self._now:
            self._mono += target - self._now
        self._now = target


def utc(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def iso(ts: float) -> str:
    """Epoch seconds to an ISO-8601 UTC string with a Z suffix."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")
