"""What every check type shares: the common config fields and the plugin protocol."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nocd.compact import compact
from nocd.duration import Duration
from nocd.model import FailureClass, Observation, Severity, Verdict

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class CheckConfig(BaseModel):
    """Fields every check has; each check type subclasses this with `type: Literal[...]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Passive checks (heartbeats, traps, Alertmanager) are fed from outside, never probed.
    passive: ClassVar[bool] = False

    name: str
    type: str
    target: str | None = None
    site: str | None = None
    device: str | None = None
    interval: Duration = 30.0
    timeout: Duration = 5.0
    retries: int = Field(3, ge=1, le=100, description="consecutive failures before hard")
    retry_interval: Duration | None = None
    recover_after: int = Field(1, ge=1, le=100)
    on_failure: Severity | None = None
    depends_on: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    active_hours: str | None = None
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("names are 1-128 characters of letters, digits, '_', '.', ':' or '-'")
        return v

    @model_validator(mode="after")
    def _timing_ok(self) -> CheckConfig:
        if self.interval < 1.0:
            raise ValueError("interval must be at least 1s")
        if self.timeout <= 0 or self.timeout > self.interval:
            raise ValueError("timeout must be above 0 and at most the interval")
        if self.retry_interval is not None and self.retry_interval < self.timeout:
            raise ValueError("retry_interval must be at least the timeout")
        return self

    @model_validator(mode="after")
    def _compact(self) -> CheckConfig:
        # Inside a Config's validation: share equal values with the checks before this one
        # and free this one's bulky dict now (nocd/compact.py, memory at 50,000 checks).
        return compact(self)

    @property
    def effective_retry_interval(self) -> float:
        """How soon a failing check is re-probed to confirm (default: a third of interval)."""
        if self.retry_interval is not None:
            return self.retry_interval
        return max(self.timeout, min(self.interval, max(self.interval / 3, 1.0)))


ProbeFn = Callable[[Any, float], Awaitable[Observation]]
EvaluateFn = Callable[[Observation, Any], Verdict]
DoneFn = Callable[[Observation], None]
StartFn = Callable[[Any, float, DoneFn], bool]
"""Optional callback-style probe: `start(cfg, deadline, done) -> bool`.

Starts the same probe as `probe(cfg, deadline)` without a coroutine or task (a UDP
transaction driven by the loop's own callbacks) and later calls `done(obs)` exactly once,
from the event loop and never from inside start(), at the latest at the deadline (plus
the loop's latency). Returns False, having started nothing, when this config needs the
coroutine path (e.g. DNS lookups, TCP, TLS); the caller then runs `probe()` as usual.
"""


@dataclass(frozen=True, slots=True)
class CheckType:
    """One registered check type: its config model, probe and evaluate functions."""

    key: str
    config: type[CheckConfig]
    probe: ProbeFn
    evaluate: EvaluateFn
    # The module's optional `start` (see StartFn): the scheduler's task-free fast path.
    start: StartFn | None = None


def time_left(deadline: float) -> float:
    """Seconds until the absolute loop-time deadline (never negative)."""
    return max(0.0, deadline - asyncio.get_running_loop().time())


def failure_verdict(obs: Observation, cfg: CheckConfig, default: Severity) -> Verdict:
    """Verdict for a failed observation, honouring the check's `on_failure` override."""
    return Verdict(cfg.on_failure or default, obs.failure, obs.detail)


def success_verdict(obs: Observation, limit: float | None, what: str) -> Verdict:
    """A successful observation's verdict: degraded (SLOW) when it took over `limit` seconds."""
    if limit is not None and obs.duration_s > limit:
        took = f"{what} took {obs.duration_s * 1000:.0f} ms (limit {limit * 1000:.0f} ms)"
        return Verdict(Severity.DEGRADED, FailureClass.SLOW, took)
    return Verdict(Severity.OK, FailureClass.NONE, obs.detail)


def default_evaluate(obs: Observation, cfg: CheckConfig) -> Verdict:
    """Judge a plain up/down observation: failure is critical unless overridden."""
    if obs.ok:
        return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
    return failure_verdict(obs, cfg, Severity.CRITICAL)
