"""From observation to state: judge, step the state machine, record, hand transitions on.

The per-probe path (`on_result`) is synchronous and cheap; persistence and incident
handling run in batches (one transaction per flush) so 50,000 phones failing in one
interval never queue behind one-row commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import structlog

from checks.base import CheckConfig, EvaluateFn
from checks.registry import get as get_check_type
from nocd.clock import Clock
from nocd.metrics import Metrics
from nocd.model import FailureClass, Observation, Severity, Verdict
from nocd.state import CheckState, StatePolicy, Transition, TransitionKind, step
from nocd.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """The latest judgement of a check (for the API, dashboard and CLI)."""

    observation: Observation
    verdict: Verdict
    at: float


_Raw = tuple[bool, str, str, float, dict[str, Any] | None, str, str, str, float]


class Results(Mapping[str, Result]):
    """The latest Result per check, kept as flat tuples of plain values.

    A tuple of strings and numbers (and a dict of them) is untracked by the cyclic GC, while
    Result + Observation + Verdict + values are five tracked objects per check that each full
    collection walks: 250,000 at 50,000 checks, replaced every interval (bench_daemon_sip.py
    saw 0.1–0.4 s pauses, several per interval). A Result is rebuilt when read.
    """

    def __init__(self) -> None:
        self._raw: dict[str, _Raw] = {}

    def put(self, name: str, obs: Observation, verdict: Verdict, at: float) -> None:
        """Record the latest judgement of `name`."""
        values = obs.values
        self._raw[name] = (
            obs.ok,
            obs.failure.value,
            obs.detail,
            obs.duration_s,
            dict(values) if values else None,
            verdict.severity.value,
            verdict.failure.value,
            verdict.reason,
            at,
        )

    def __getitem__(self, name: str) -> Result:
        ok, failure, detail, duration, values, sev, vfailure, reason, at = self._raw[name]
        obs = Observation(
            ok,
            FailureClass(failure),
            detail,
            duration,
            MappingProxyType(values) if values is not None else MappingProxyType({}),
        )
        return Result(obs, Verdict(Severity(sev), FailureClass(vfailure), reason), at)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(frozen=True, slots=True)
class Change:
    """A transition of one check, handed to the incident engine."""

    check: CheckConfig
    state: CheckState
    transition: Transition
    verdict: Verdict


BatchHandler = Callable[[object, Sequence[Change], float], Awaitable[None]]
"""Called with (connection, changes, now) inside the flush transaction."""


def policy_for(cfg: CheckConfig, flap_window: int, high: float, low: float) -> StatePolicy:
    """The state-machine policy of a check."""
    return StatePolicy(cfg.retries, cfg.recover_after, flap_window, high, low)


class Pipeline:
    """Holds every check's state and latest result; flushes changes in batches."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        judge_gate: Callable[[CheckConfig, float], bool] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._judge_gate = judge_gate or (lambda _c, _t: True)
        self.states: dict[str, CheckState] = {}
        self.results = Results()
        self._checks: dict[str, CheckConfig] = {}
        self._policies: dict[str, StatePolicy] = {}
        self._evaluators: dict[str, EvaluateFn] = {}
        self._dirty: set[str] = set()
        self._persisted: set[str] = set()  # checks with a row in check_state
        self._changes: list[Change] = []
        self._flushed = asyncio.Event()
        self._kick = asyncio.Event()
        self.handlers: list[BatchHandler] = []
        self.flush_errors = 0
        self.store_writable = True

    async def load(self) -> int:
        """Restore persisted check states; returns how many were loaded."""
        async with self._store.reader.execute("SELECT check_name, state FROM check_state") as cur:
            rows = await cur.fetchall()
        for name, text in rows:
            self._persisted.add(name)
            try:
                self.states[name] = CheckState.from_json(text)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable saved state", check=name, error=str(exc))
        return len(self.states)

    def set_checks(self, checks: Sequence[CheckConfig], flap: tuple[int, float, float]) -> None:
        """Install the running config's checks (on start and reload)."""
        self._checks = {c.name: c for c in checks}
        self._policies = {c.name: policy_for(c, *flap) for c in checks}
        self._evaluators = {c.type: get_check_type(c.type).evaluate for c in checks}
        self._metrics.set_checks(self._checks)
        for name, cfg in self._checks.items():
            st = self.states.get(name)
            if st is not None:
                self._metrics.observe(name, cfg.site, Observation(ok=st.up), st)

    def check(self, name: str) -> CheckConfig | None:
        """The running config of check `name`."""
        return self._checks.get(name)

    def on_result(self, cfg: CheckConfig, obs: Observation, lateness: float) -> float | None:
        """Judge one observation (hot path); returns a retry delay while soft-failing."""
        now = self._clock.now()
        if not self._judge_gate(cfg, now):
            # Outside the check's active hours: measured, but not judged (a closed shop).
            verdict = Verdict(Severity.UNKNOWN, FailureClass.NONE, "outside active hours")
            if not obs.ok:
                self._metrics.suppressed.labels("inactive_hours").inc()
        else:
            try:
                evaluate = self._evaluators.get(cfg.type) or get_check_type(cfg.type).evaluate
                verdict = evaluate(obs, cfg)
            except Exception as exc:  # noqa: BLE001 - a judging bug or a full disk must not stop the pipeline; changes are kept
                log.error("evaluate raised", check=cfg.name, error=repr(exc))
                verdict = Verdict(Severity.UNKNOWN, FailureClass.INTERNAL, f"evaluate error: {exc}")
        self.results.put(cfg.name, obs, verdict, now)
        old = self.states.get(cfg.name)
        if old is None:  # not a default argument: building one per probe costs ~3 µs
            old = CheckState(since=now)
        policy = self._policies.get(cfg.name) or policy_for(cfg, 20, 30.0, 25.0)
        new, transitions = step(old, verdict, now, policy)
        if new is not old:
            self.states[cfg.name] = new
            if new.durable_key() != old.durable_key() or cfg.name not in self._persisted:
                self._dirty.add(cfg.name)
        self._metrics.observe(cfg.name, cfg.site, obs, new, changed=new is not old)
        for t in transitions:
            self._metrics.transitions.labels(t.kind.value).inc()
            self._changes.append(Change(cfg, new, t, verdict))
            self._log_transition(cfg, t, verdict)
        if transitions:
            self._kick.set()
        return cfg.effective_retry_interval if new.soft_failing else None

    def submit(self, name: str, obs: Observation) -> None:
        """Feed an observation for a passive check (trap, Alertmanager) or a manual probe."""
        cfg = self._checks.get(name)
        if cfg is None:
            log.warning("observation for unknown check dropped", check=name)
            return
        self.on_result(cfg, obs, 0.0)

    @staticmethod
    def _log_transition(cfg: CheckConfig, t: Transition, verdict: Verdict) -> None:
        if t.kind is TransitionKind.DOWN:
            log.warning(
                "check down",
                check=cfg.name,
                site=cfg.site,
                severity=t.new.value,
                failure=verdict.failure.value,
                reason=verdict.reason,
            )
        elif t.kind is TransitionKind.UP:
            log.info("check recovered", check=cfg.name, site=cfg.site)
        else:
            log.info(
                "check changed",
                check=cfg.name,
                site=cfg.site,
                change=t.kind.value,
                severity=t.new.value,
            )

    async def flush(self) -> int:
        """Persist dirty states and hand pending changes to the handlers in one transaction."""
        if not self._dirty and not self._changes:
            return 0
        dirty, self._dirty = self._dirty, set()
        changes, self._changes = self._changes, []
        now = self._clock.now()
        rows = [(n, self.states[n].to_json(), now) for n in dirty if n in self.states]
        try:
            async with self._store.transaction() as conn:
                await conn.executemany(
                    "INSERT INTO check_state (check_name, state, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(check_name) DO UPDATE SET state=excluded.state, "
                    "updated_at=excluded.updated_at",
                    rows,
                )
                for handler in self.handlers:
                    await handler(conn, changes, now)
        except asyncio.CancelledError:
            self._dirty |= dirty
            self._changes[:0] = changes
            raise
        except Exception as exc:  # noqa: BLE001 - a judging bug or a full disk must not stop the pipeline; changes are kept
            self._dirty |= dirty
            self._changes[:0] = changes
            self.flush_errors += 1
            self.store_writable = False
            self._metrics.store_ok.set(0)
            log.error("state flush failed; will retry", error=str(exc), pending=len(changes))
            return 0
        self._persisted.update(dirty)
        self.store_writable = True
        self._metrics.store_ok.set(1)
        return len(changes)

    async def run(self, period: float = 1.0) -> None:
        """Flush every `period` seconds, or at once when a transition happened."""
        while True:
            self._kick.clear()
            await self.flush()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (see scheduler).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._kick.wait()
            # Let a burst of transitions from one tick accumulate into one transaction.
            await asyncio.sleep(0.05)

    @property
    def pending_changes(self) -> int:
        """Transitions not yet handed to the incident engine."""
        return len(self._changes)
