"""Operator actions on incidents (ack, resolve, note), each in its own transaction.

One implementation serves the API, CLI, dashboard and Twilio webhooks, so an ack is the
same everywhere and repeating one (a replayed webhook) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from nocd.clock import Clock
from nocd.incidents.engine import IncidentEngine
from nocd.incidents.model import IncidentState, load
from nocd.store import Store


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action did: `changed` is False for a repeat or an unknown incident."""

    ok: bool
    changed: bool
    code: str | None
    state: str | None
    message: str


class IncidentActions:
    """ack / resolve / note by incident code or id."""

    def __init__(self, store: Store, engine: IncidentEngine, clock: Clock) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock

    async def ack(self, ref: str, by: str, via: str) -> ActionResult:
        """Acknowledge: stops escalation. Idempotent."""
        async with self._store.transaction() as conn:
            inc = await load(conn, ref)
            if inc is None:
                return ActionResult(False, False, None, None, f"no incident {ref}")
            if inc.state is IncidentState.RESOLVED:
                return ActionResult(
                    True,
                    False,
                    inc.code,
                    inc.state.value,
                    f"incident {inc.code} is already resolved",
                )
            changed = await self._engine.acknowledge(conn, inc, self._clock.now(), by, via)
            msg = (
                f"incident {inc.code} acknowledged"
                if changed
                else f"incident {inc.code} was already acknowledged"
            )
            return ActionResult(True, changed, inc.code, IncidentState.ACKNOWLEDGED.value, msg)

    async def resolve(self, ref: str, by: str, via: str) -> ActionResult:
        """Resolve by hand. Idempotent."""
        async with self._store.transaction() as conn:
            inc = await load(conn, ref)
            if inc is None:
                return ActionResult(False, False, None, None, f"no incident {ref}")
            if inc.state is IncidentState.RESOLVED:
                return ActionResult(
                    True,
                    False,
                    inc.code,
                    inc.state.value,
                    f"incident {inc.code} was already resolved",
                )
            await self._engine.resolve_incident(conn, inc, self._clock.now(), by, via)
            return ActionResult(
                True, True, inc.code, IncidentState.RESOLVED.value, f"incident {inc.code} resolved"
            )

    async def note(self, ref: str, by: str, text: str) -> ActionResult:
        """Add a note to the timeline (root cause, remedy, progress)."""
        text = text.strip()
        if not text:
            return ActionResult(False, False, None, None, "a note needs text")
        async with self._store.transaction() as conn:
            inc = await load(conn, ref)
            if inc is None:
                return ActionResult(False, False, None, None, f"no incident {ref}")
            await self._engine.add_note(conn, inc, self._clock.now(), by, text[:4000])
            return ActionResult(True, True, inc.code, inc.state.value, "note added")
