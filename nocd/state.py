"""Soft/hard state of one check: a pure `step(state, verdict, now, policy)`.

A failure becomes hard after `retries` consecutive failing verdicts; a hard failure
recovers after `recover_after` consecutive successes. Flapping uses Icinga's weighted
state-change percentage over the last `window` results: recent changes weigh more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from enum import StrEnum

from nocd.model import Severity, Verdict


@dataclass(frozen=True, slots=True)
class StatePolicy:
    """Per-check thresholds for the state machine."""

    retries: int = 3
    recover_after: int = 1
    flap_window: int = 20
    flap_high: float = 30.0
    flap_low: float = 25.0


@dataclass(frozen=True, slots=True)
class CheckState:
    """What nocd remembers about one check between probes (persisted as JSON)."""

    hard: Severity = Severity.OK  # the confirmed severity; OK when up
    failures: int = 0  # consecutive failing verdicts
    successes: int = 0  # consecutive OK verdicts while down (towards recover_after)
    last: Severity = Severity.OK  # the last verdict's severity
    since: float = 0.0  # when `hard` last changed
    history: str = ""  # last results, oldest first: "1" ok, "0" failing
    flapping: bool = False
    failure: str = "none"  # failure class of the last failing verdict
    reason: str = ""  # reason of the last failing verdict

    @property
    def soft_failing(self) -> bool:
        """Failing but not yet confirmed: re-probe at the retry interval."""
        return self.hard is Severity.OK and self.failures > 0

    @property
    def up(self) -> bool:
        """True when the hard state is OK."""
        return self.hard is Severity.OK

    def durable_key(self) -> tuple[object, ...]:
        """The fields worth a write when they change (the flap history alone is not)."""
        return (self.hard, self.failures, self.successes, self.flapping, self.since)

    def to_json(self) -> str:
        """Serialize for the store."""
        # Not dataclasses.asdict: it deep-copies every field (a third of a storm's flush).
        return json.dumps({f: getattr(self, f) for f in _FIELDS}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CheckState:
        """Deserialize from the store; unknown keys are ignored (older/newer versions)."""
        data = json.loads(text)
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("hard", "last"):
            if key in fields:
                fields[key] = Severity(fields[key])
        return cls(**fields)


_FIELDS = tuple(f.name for f in fields(CheckState))


class TransitionKind(StrEnum):
    """What changed in a step."""

    DOWN = "down"  # OK → failing (hard)
    UP = "up"  # failing → OK (hard)
    SEVERITY = "severity"  # failing → failing with another severity
    FLAP_START = "flap_start"
    FLAP_STOP = "flap_stop"


@dataclass(frozen=True, slots=True)
class Transition:
    """A hard-state change (or a flapping change) produced by `step`."""

    kind: TransitionKind
    old: Severity
    new: Severity
    at: float


def flap_percent(history: str, window: int = 0) -> float:
    """Icinga's weighted percent state change: weights rise from 0.8 (oldest) to 1.2.

    A history shorter than `window` counts as padded to it with its oldest result, as
    Nagios/Icinga seed the history with the initial state: one transient failure in a
    young check is then ~10 % (not 57 % over 5 results), while a young check that keeps
    changing still crosses the threshold.
    """
    n = len(history)
    size = max(n, window)
    if n < 2:
        return 0.0
    pad = size - n  # the padding repeats the oldest result: no changes in it
    scale = 0.4 / max(1, size - 2)
    total = 0.0
    for i in range(1, n):
        if history[i] != history[i - 1]:
            total += 0.8 + scale * (pad + i - 1)
    return 100.0 * total / (size - 1)


def step(
    state: CheckState, verdict: Verdict, now: float, policy: StatePolicy
) -> tuple[CheckState, list[Transition]]:
    """Advance the state by one verdict; returns the new state and what changed."""
    sev = verdict.severity
    if sev is Severity.UNKNOWN:
        # nocd could not judge: neither a failure nor a success, nothing changes.
        return state, []
    if (
        sev is Severity.OK
        and state.hard is Severity.OK
        and state.failures == 0
        and not state.flapping
        and len(state.history) >= policy.flap_window
        and "0" not in state.history
    ):
        # The steady healthy case, nearly every probe: the state is unchanged (hot path).
        return state, []
    failing = sev is not Severity.OK
    history = (state.history + ("0" if failing else "1"))[-policy.flap_window :]
    out: list[Transition] = []
    s = replace(state, history=history, last=verdict.severity)
    if failing:
        s = replace(
            s,
            failures=state.failures + 1,
            successes=0,
            failure=str(verdict.failure),
            reason=verdict.reason,
        )
        if state.hard is Severity.OK and s.failures >= policy.retries:
            s = replace(s, hard=verdict.severity, since=now)
            out.append(Transition(TransitionKind.DOWN, Severity.OK, verdict.severity, now))
        elif state.hard is not Severity.OK and verdict.severity is not state.hard:
            s = replace(s, hard=verdict.severity)
            out.append(Transition(TransitionKind.SEVERITY, state.hard, verdict.severity, now))
    else:
        # Successes only count while down (towards recover_after): an up check's state
        # then stays identical from probe to probe and needs no write.
        if state.hard is Severity.OK:
            s = replace(s, failures=0, successes=0)
        else:
            s = replace(s, failures=0, successes=state.successes + 1)
        if state.hard is not Severity.OK and s.successes >= policy.recover_after:
            s = replace(s, hard=Severity.OK, since=now, failure="none", reason="", successes=0)
            out.append(Transition(TransitionKind.UP, state.hard, Severity.OK, now))
    pct = flap_percent(history, policy.flap_window)
    if not state.flapping and pct > policy.flap_high:
        s = replace(s, flapping=True)
        out.append(Transition(TransitionKind.FLAP_START, s.hard, s.hard, now))
    elif state.flapping and pct < policy.flap_low:
        s = replace(s, flapping=False)
        out.append(Transition(TransitionKind.FLAP_STOP, s.hard, s.hard, now))
    return s, out
