"""Glue between incident actions and the paging webhooks' Acker contract."""

from __future__ import annotations

import structlog

from nocd.incidents.actions import IncidentActions
from paging.acks import IncidentActionResult

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
