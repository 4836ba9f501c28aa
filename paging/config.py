"""Config of paging: providers, schedules, escalation policies and routing."""

from __future__ import annotations

from nocd.inventory import Strict


class PagingConfig(Strict):
    """Paging settings; filled in by the paging issue (#7)."""

    enabled: bool = True
