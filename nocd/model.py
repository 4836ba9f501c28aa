"""Core value types that flow through nocd: Observation → Verdict → State."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Severity(StrEnum):
    """How bad a verdict or incident is; maps onto the SLA classes of the domain."""

    OK = "ok"
    UNKNOWN = "unknown"  # nocd itself could not judge (e.g. probe crashed internally)
    LOW = "low"  # P3/P4: informational, non-service-impacting
    DEGRADED = "degraded"  # P2
    CRITICAL = "critical"  # P1

    @property
    def rank(self) -> int:
        """Ordering for "worst of": ok < unknown < low < degraded < critical."""
        return _RANK[self]

    @property
    def priority(self) -> str:
        """The SLA priority label (P1–P4) for this severity."""
        return _PRIORITY[self]


_RANK = {
    Severity.OK: 0,
    Severity.UNKNOWN: 1,
    Severity.LOW: 2,
    Severity.DEGRADED: 3,
    Severity.CRITICAL: 4,
}
_PRIORITY = {
    Severity.CRITICAL: "P1",
    Severity.DEGRADED: "P2",
    Severity.LOW: "P3",
    Severity.UNKNOWN: "P4",
    Severity.OK: "P4",
}


def worst(*severities: Severity) -> Severity:
    """Return the most severe of the given severities (OK when none)."""
    return max(severities, key=lambda s: s.rank, default=Severity.OK)


class FailureClass(StrEnum):
    """The closed set of reasons a probe can fail; every check maps its errors onto these."""

    NONE = "none"
    TIMEOUT = "timeout"
    REFUSED = "refused"  # TCP RST / ICMP port unreachable
    UNREACHABLE = "unreachable"  # no route, host/network unreachable
    DNS = "dns"  # name did not resolve
    TLS = "tls"  # handshake or certificate verification failed
    PROTOCOL = "protocol"  # garbage or malformed reply
    BAD_STATUS = "bad_status"  # a well-formed reply with an unexpected status
    CONTENT = "content"  # reply body/values did not match expectations
    SLOW = "slow"  # answered, but above the latency threshold
    AUTH = "auth"  # rejected credentials
    CONFIG = "config"  # the far side says our request is wrong (404, 484, unknown user)
    OVERLOADED = "overloaded"  # 503 / maintenance
    SERVER_ERROR = "server_error"  # 5xx other than overload
    THRESHOLD = "threshold"  # a measured value crossed a limit
    EXPIRING = "expiring"  # certificate close to expiry
    RESTARTED = "restarted"  # device uptime went backwards
    MISSING = "missing"  # expected things absent (phones, heartbeats)
    EXTERNAL = "external"  # reported by another system (Alertmanager, trap)
    INTERNAL = "internal"  # nocd's own error while probing


@dataclass(frozen=True, slots=True)
class Observation:
    """What a probe measured. Probes never raise; every outcome is an Observation."""

    ok: bool
    failure: FailureClass = FailureClass.NONE
    detail: str = ""
    duration_s: float = 0.0
    # Free-form measured values (status codes, RTTs, counts) for judgement and evidence.
    values: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def failed(
        cls, failure: FailureClass, detail: str, duration_s: float = 0.0, **values: Any
    ) -> Observation:
        """Build a failed observation."""
        return cls(False, failure, detail, duration_s, MappingProxyType(dict(values)))

    @classmethod
    def success(cls, detail: str = "", duration_s: float = 0.0, **values: Any) -> Observation:
        """Build a successful observation."""
        return cls(True, FailureClass.NONE, detail, duration_s, MappingProxyType(dict(values)))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of one observation: severity, failure class and a human reason."""

    severity: Severity
    failure: FailureClass = FailureClass.NONE
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.severity is Severity.OK


OK_VERDICT = Verdict(Severity.OK)


class ExitCode(IntEnum):
    """Process exit codes shared by the CLI commands."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
