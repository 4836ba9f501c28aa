"""Maintenance windows and silences: which ones cover a check at a given time (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from checks.base import CheckConfig
from nocd.calendar_config import CalendarConfig
from nocd.config import Config
from nocd.incidents.config import MaintenanceMatch, MaintenanceWindow
from paging.hours import is_open


@dataclass(frozen=True, slots=True)
class Silence:
    """A run-time silence (created through the API/CLI), stored in the `silences` table."""

    id: int
    name: str
    match: MaintenanceMatch
    starts_at: float
    ends_at: float
    created_by: str
    comment: str = ""
    public: bool = False


def matches(match: MaintenanceMatch, check: CheckConfig, cfg: Config) -> bool:
    """True when every given selector of `match` matches the check (empty selects all)."""
    if match.checks and check.name not in match.checks:
        return False
    if match.sites and check.site not in match.sites:
        return False
    if match.customers:
        site = cfg.sites.get(check.site or "")
        if site is None or site.customer not in match.customers:
            return False
    return all(check.labels.get(k) == v for k, v in match.labels.items())


def window_active(window: MaintenanceWindow, now: float) -> bool:
    """Whether a configured window is in force at `now` (epoch seconds)."""
    t = datetime.fromtimestamp(now, UTC)
    if window.start is not None and window.end is not None and window.start <= t < window.end:
        return True
    if window.recurring is not None:
        cal = CalendarConfig(timezone=window.recurring.timezone, weekly=window.recurring.weekly)
        return is_open(cal, t)
    return False


def covering(
    check: CheckConfig, cfg: Config, silences: Sequence[Silence], now: float
) -> str | None:
    """The name of a window or silence covering `check` at `now`, or None."""
    for w in cfg.maintenance:
        if window_active(w, now) and matches(w.match, check, cfg):
            return f"maintenance:{w.name}"
    for s in silences:
        if s.starts_at <= now < s.ends_at and matches(s.match, check, cfg):
            return f"silence:{s.name}"
    return None
