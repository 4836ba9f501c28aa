"""`heartbeat` check (dead man's switch): fails when no heartbeat arrived for longer than `period`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from pydantic import model_validator

from checks.base import CheckConfig, failure_verdict
from checks.resources import shared
from nocd.duration import Duration, format_duration
from nocd.model import FailureClass, Observation, Severity, Verdict


class HeartbeatBook:
    """When each heartbeat check last heard from its sender (monotonic seconds)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.started = now()  # before any heartbeat, the period counts from here (a grace)
        self.last: dict[str, float] = {}

    def beat(self, name: str) -> None:
        """Record a heartbeat for `name` now."""
        self.last[name] = self._now()

    def silence(self, name: str) -> tuple[float, bool]:
        """Seconds since the last heartbeat (or since start) and whether one was ever seen."""
        seen = name in self.last
        return self._now() - self.last.get(name, self.started), seen


def book() -> HeartbeatBook:
    """The running loop's heartbeat book, shared by the POST handler and the probe."""

    async def _noop(_: HeartbeatBook) -> None:
        return None

    return shared("heartbeats", lambda: HeartbeatBook(asyncio.get_running_loop().time), _noop)


class Config(CheckConfig):
    """Config of a `heartbeat` check: POST /api/v1/heartbeat/<name> at least every `period`."""

    type: Literal["heartbeat"]
    period: Duration

    @model_validator(mode="after")
    def _period(self) -> Config:
        if self.period < 1:
            raise ValueError("period must be at least 1s")
        return self


async def probe(cfg: Config, deadline: float) -> Observation:
    """Look up the last heartbeat; never raises."""
    silent, seen = book().silence(cfg.name)
    values = {"silent_s": round(silent, 3), "period_s": cfg.period, "seen": seen}
    if silent <= cfg.period:
        detail = f"last heartbeat {format_duration(silent)} ago" if seen else "waiting for first"
        return Observation.success(detail, **values)
    if seen:
        detail = (
            f"no heartbeat for {format_duration(silent)} (period {format_duration(cfg.period)})"
        )
    else:
        detail = (
            f"no heartbeat since nocd started {format_duration(silent)} ago "
            f"(period {format_duration(cfg.period)})"
        )
    return Observation.failed(FailureClass.MISSING, detail, **values)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """A missing heartbeat is critical unless `on_failure` says otherwise."""
    if obs.ok:
        return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
    return failure_verdict(obs, cfg, Severity.CRITICAL)
