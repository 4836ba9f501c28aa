"""Monitoring hours by location: outside a check's (or its site's) active hours, failures
are measured but not judged — a shop closed at night is not an outage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from checks.base import CheckConfig
from nocd.config import Config
from paging.hours import is_open


def active_calendar_name(check: CheckConfig, cfg: Config) -> str | None:
    """The calendar that bounds when `check` is judged: its own, else its site's."""
    if check.active_hours:
        return check.active_hours
    site = cfg.sites.get(check.site or "")
    return site.active_hours if site is not None else None


def make_gate(config: Callable[[], Config]) -> Callable[[CheckConfig, float], bool]:
    """A pipeline gate: True when `check` is to be judged at epoch second `now`."""

    def gate(check: CheckConfig, now: float) -> bool:
        cfg = config()
        name = active_calendar_name(check, cfg)
        if name is None:
            return True  # the common case: monitored 24/7, no calendar work per probe
        cal = cfg.support_hours.get(name)
        return cal is None or is_open(cal, datetime.fromtimestamp(now, UTC))

    return gate
