"""Config of incident grouping, aggregate severity rules, flapping and maintenance windows."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import Field, field_validator, model_validator

from nocd.calendar_config import parse_range
from nocd.duration import Duration
from nocd.inventory import Strict, check_zone
from nocd.model import Severity

_GROUP = re.compile(r"^(site|device|customer|check|label:[A-Za-z0-9_.-]+)$")


class FlappingConfig(Strict):
    """Icinga-style weighted flap detection over the last `window` results."""

    window: int = Field(20, ge=5, le=100)
    high: float = Field(30.0, gt=0, le=100, description="percent state change to start flapping")
    low: float = Field(25.0, gt=0, le=100, description="percent state change to stop flapping")

    @model_validator(mode="after")
    def _order(self) -> FlappingConfig:
        if self.low > self.high:
            raise ValueError("flapping.low must not exceed flapping.high")
        return self


class AggregateRule(Strict):
    """One rule of an incident's severity: when its condition holds, the incident is `severity`.

    Conditions over the members of the incident group:
    - `any_failing` / `all_failing`: check names, types or `label=value` selectors;
    - `failing_ratio` with `of`: the share of matching checks failing (e.g. 0.5 of phones).
    """

    severity: Severity
    any_failing: tuple[str, ...] = ()
    all_failing: tuple[str, ...] = ()
    of: tuple[str, ...] = ()
    failing_ratio: float | None = Field(None, gt=0, le=1)
    missing_ratio: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _has_condition(self) -> AggregateRule:
        if not (self.any_failing or self.all_failing or self.failing_ratio or self.missing_ratio):
            raise ValueError(
                "a rule needs a condition: any_failing, all_failing, failing_ratio or missing_ratio"
            )
        if (self.failing_ratio or self.missing_ratio) and not self.of:
            raise ValueError("failing_ratio/missing_ratio need `of` (which checks to count)")
        return self


class IncidentsConfig(Strict):
    """How failures become incidents."""

    group_by: str = "site"
    resolve_hold_down: Duration = 0.0
    flapping: FlappingConfig = FlappingConfig()
    rules: tuple[AggregateRule, ...] = ()
    uplink_severity: Severity = Severity.DEGRADED

    @field_validator("group_by")
    @classmethod
    def _group(cls, v: str) -> str:
        if not _GROUP.match(v):
            raise ValueError("group_by is one of site, device, customer, check, label:NAME")
        return v


class MaintenanceMatch(Strict):
    """Which checks a window or silence covers (all given selectors must match)."""

    checks: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)


class RecurringWindow(Strict):
    """A weekly recurring window in an IANA zone, e.g. every Sunday 02:00-04:00."""

    timezone: str
    weekly: dict[str, tuple[str, ...]]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

    @field_validator("weekly")
    @classmethod
    def _ranges(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        from nocd.calendar_config import DAYS

        for day, ranges in v.items():
            if day not in DAYS:
                raise ValueError(f"unknown weekday {day!r}; use one of {', '.join(DAYS)}")
            for r in ranges:
                parse_range(r)
        return v


class MaintenanceWindow(Strict):
    """Planned work: suppresses new pages and tickets for matching checks; never blocks resolves."""

    name: str
    match: MaintenanceMatch
    start: datetime | None = None
    end: datetime | None = None
    recurring: RecurringWindow | None = None
    public: bool = Field(False, description="show on the public status page")
    comment: str = ""

    @model_validator(mode="after")
    def _when(self) -> MaintenanceWindow:
        if self.recurring is None and (self.start is None or self.end is None):
            raise ValueError("a maintenance window needs start and end, or recurring")
        for t in (self.start, self.end):
            if t is not None and t.tzinfo is None:
                raise ValueError("start/end need a time zone offset, e.g. 2026-12-01T02:00:00Z")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self
