"""Wall-clock step detection against the monotonic clock (paging/walljumps.py)."""

from __future__ import annotations

from nocd.clock import FakeClock
from paging.walljumps import TOLERANCE, WallClockJumps


class SteppedClock(FakeClock):
    """A FakeClock whose wall clock can step alone."""

    def step(self, seconds: float) -> None:
        self._now += seconds


def test_elapsed_time_is_not_a_jump() -> None:
    clock = SteppedClock()
    jumps = WallClockJumps(clock)
    assert jumps.check() == 0.0  # the first reading is only a baseline
    clock.advance(3600)  # both clocks: time passed (or nocd was stopped and started)
    assert jumps.check() == 0.0


def test_steps_are_measured_both_ways() -> None:
    clock = SteppedClock()
    jumps = WallClockJumps(clock)
    jumps.check()
    clock.advance(1)
    clock.step(7200)
    assert jumps.check() == 7200.0
    clock.advance(1)
    assert jumps.check() == 0.0  # measured once, from the new baseline on
    clock.step(-3600)
    assert jumps.check() == -3600.0


def test_small_disagreement_is_tolerated() -> None:
    clock = SteppedClock()
    jumps = WallClockJumps(clock)
    jumps.check()
    clock.step(TOLERANCE * 0.9)  # slewing or a late pass, not a step
    assert jumps.check() == 0.0
    clock.step(-TOLERANCE * 1.5)
    assert jumps.check() == -TOLERANCE * 1.5
