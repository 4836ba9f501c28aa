"""The event-loop lag histogram and max gauge see a loop blocked by a synchronous call."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, generate_latest

from nocd.looplag import LoopLag


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def test_a_blocked_loop_shows_as_lag() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry, period=0.02)
    task = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.2)
        assert _sample(registry, "nocd_event_loop_lag_seconds_count") >= 3
        # No idle bound asserted: on a busy CI machine an idle loop can wait for a CPU too.
        time.sleep(0.3)  # noqa: ASYNC251 - the blocking call the metric exists to catch
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    total = _sample(registry, "nocd_event_loop_lag_seconds_count")
    assert total - _sample(registry, "nocd_event_loop_lag_seconds_bucket", le="0.25") >= 1
    assert _sample(registry, "nocd_event_loop_lag_max_seconds") >= 0.25
    text = generate_latest(registry).decode()
    assert "# TYPE nocd_event_loop_lag_seconds histogram" in text


def test_negative_jitter_counts_as_zero() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry)
    lag.observe(-0.0001)
    assert _sample(registry, "nocd_event_loop_lag_seconds_bucket", le="0.001") == 1
    assert _sample(registry, "nocd_event_loop_lag_max_seconds") == 0.0
