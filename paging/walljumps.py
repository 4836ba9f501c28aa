"""Wall-clock steps while nocd runs: keep every pending wait's remaining elapsed time.

Escalation deadlines and outbox retry times are persisted as wall-clock epoch seconds, so a
restart neither skips nor doubles a step (after downtime, what is overdue fires). But a wall
clock *stepped* while nocd runs (NTP correcting a wrong clock, `date -s`) would otherwise
fire a 10-minute step at once after a +2 h step, or hold it an extra hour after a -1 h one.
The monotonic clock does not step: comparing the two between paging passes measures the
jump, and the pending deadlines move by it.

(Linux CLOCK_MONOTONIC also stops while the machine is suspended, so a resume is taken as a
forward jump and pending waits resume where they stood; on a server that is what we want.)
"""

from __future__ import annotations

import aiosqlite
import structlog

from nocd.clock import Clock

log = structlog.get_logger(__name__)

TOLERANCE = 2.0  # seconds the clocks may disagree between passes (slewing, scheduling)


class WallClockJumps:
    """Measures how far the wall clock jumped between calls, against the monotonic clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: tuple[float, float] | None = None

    def check(self) -> float:
        """Seconds the wall clock stepped since the last call (+ forward, - back), else 0."""
        wall, mono = self._clock.now(), self._clock.monotonic()
        last, self._last = self._last, (wall, mono)
        if last is None:
            return 0.0
        jump = (wall - last[0]) - (mono - last[1])
        return jump if abs(jump) > TOLERANCE else 0.0


async def shift_deadlines(conn: aiosqlite.Connection, jump: float, now: float) -> tuple[int, int]:
    """Move deadlines not yet due before a `jump` by it (inside the caller's transaction).

    Returns (escalation steps, outbox rows) moved. What was already due stays due.
    """
    before = now - jump  # the wall time it would be, had the clock not stepped
    cur = await conn.execute(
        "UPDATE paging_escalations SET next_fire_at = next_fire_at + ? "
        "WHERE state='active' AND next_fire_at > ?",
        (jump, before),
    )
    steps = cur.rowcount
    cur = await conn.execute(
        "UPDATE outbox SET not_before = not_before + ? WHERE state='pending' AND not_before > ?",
        (jump, before),
    )
    retries = cur.rowcount
    log.warning(
        "wall clock stepped; pending waits keep their remaining time",
        jump_s=round(jump, 1),
        escalations_moved=steps,
        retries_moved=retries,
    )
    return steps, retries
