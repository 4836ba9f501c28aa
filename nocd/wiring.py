"""Glue between the incident engine and its listeners (tickets, paging) in the daemon."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from nocd.config import Config
from nocd.incidents.actions import IncidentActions
from paging.acks import IncidentActionResult
from paging.schedules import IcalShifts, load_ical

log = structlog.get_logger(__name__)


class PagingAcker:
    """The paging webhooks' `Acker`, over the one implementation of incident actions."""

    def __init__(self, actions: IncidentActions) -> None:
        self._actions = actions

    async def ack(self, ref: str, by: str, via: str) -> IncidentActionResult:
        """Acknowledge by code or id (idempotent)."""
        r = await self._actions.ack(ref, by, via)
        return IncidentActionResult(r.ok, r.code or ref, r.state or "", r.changed, r.message)

    async def resolve(self, ref: str, by: str, via: str) -> IncidentActionResult:
        """Resolve by code or id (idempotent)."""
        r = await self._actions.resolve(ref, by, via)
        return IncidentActionResult(r.ok, r.code or ref, r.state or "", r.changed, r.message)


def ical_shifts(cfg: Config) -> Mapping[str, IcalShifts]:
    """Load the iCal files of schedules that use one; a broken file is logged, not fatal."""
    out: dict[str, IcalShifts] = {}
    for name, sched in cfg.paging.schedules.items():
        if sched.ical_file is None:
            continue
        try:
            out[name] = load_ical(sched.ical_file, dict(cfg.paging.people))
        except Exception as exc:  # noqa: BLE001 - the layers still answer without the feed
            log.error("cannot read on-call iCal file", schedule=name, error=str(exc))
    return out
