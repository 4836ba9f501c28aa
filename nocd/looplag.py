"""Event-loop lag: a task that times its own sleeps, exported as a Prometheus histogram.

Every probe, page and API answer waits behind whatever holds the loop; a blocking call or a
long collection shows up here before it shows as late probes or a missed watchdog. Cost: one
timer and one bisect per period (4 a second by default), nothing on the hot path.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge

from nocd.metrics import LightHistogram

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Fine below 100 ms, where a healthy loop lives and where the soak's 50 ms target sits."""

PERIOD = 0.25


class LoopLag:
    """Measures how much later than asked the loop wakes a sleeping task."""

    def __init__(self, registry: CollectorRegistry, period: float = PERIOD) -> None:
        self.period = period
        self.histogram = LightHistogram(
            "nocd_event_loop_lag_seconds",
            "How much later than scheduled the event loop ran a timer (sampled every"
            f" {period:g} s).",
            BUCKETS,
            registry,
        )
        self.max = Gauge(
            "nocd_event_loop_lag_max_seconds",
            "The largest event-loop lag seen since start.",
            registry=registry,
        )
        self.worst = 0.0

    def observe(self, lag: float) -> None:
        """Record one lag sample (seconds; negative clock jitter counts as 0)."""
        lag = max(0.0, lag)
        self.histogram.observe(lag)
        if lag > self.worst:
            self.worst = lag
            self.max.set(lag)

    async def run(self) -> None:
        """Sleep `period`, observe how late the wake-up came, forever."""
        loop = asyncio.get_running_loop()
        while True:
            # loop.time() is the clock the loop schedules timers by: the thing measured.
            asked = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.observe(loop.time() - asked)
