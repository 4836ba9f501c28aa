"""Config of ticket sinks (the built-in store is always on)."""

from __future__ import annotations

from nocd.inventory import Strict


class TicketsConfig(Strict):
    """Ticket delivery settings; sinks are added per issue #6."""

    enabled: bool = True
