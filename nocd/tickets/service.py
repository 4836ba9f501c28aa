"""`Tickets`: one ticket per incident in the built-in store, kept current and fanned out to sinks.

The incidents engine calls `on_incident` inside the transaction that changes an incident;
every change becomes a numbered ticket comment, a timeline event (kind "ticket") and one
outbox row per sink with the key `ticket:<incident>:<sink>:<seq>`, so a replay after a crash
enqueues nothing twice. `handlers()` gives the outbox worker one handler per sink; a handler
sends a ticket's ops in order and records the sink's id for the ticket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite
import structlog

from nocd.clock import Clock, iso
from nocd.config import Config
from nocd.delivery import DeliveryError
from nocd.duration import format_duration
from nocd.incidents.model import (
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentState,
    load,
)
from nocd.incidents.timeline import add_event
from nocd.inventory import SupportPlan
from nocd.outbox import Handler, OutboxItem, enqueue
from nocd.store import Store
from nocd.tickets import describe, registry, sla
from nocd.tickets import store as db
from nocd.tickets.sink import Action, Sink, TicketOp, TicketView
from nocd.tickets.store import Comment, Ticket, TicketStatus

log = structlog.get_logger(__name__)

_STATUS = {
    IncidentState.TRIGGERED: TicketStatus.OPEN,
    IncidentState.ACKNOWLEDGED: TicketStatus.ACKNOWLEDGED,
    IncidentState.RESOLVED: TicketStatus.RESOLVED,
}


def fingerprint(incident: Incident) -> str:
    """The ticket's identity at the help desks (Jira label, Message-ID), stable across restarts."""
    return f"nocd-{incident.id}-{int(incident.opened_at)}"


def outbox_key(incident_id: int, sink: str, seq: int) -> str:
    """The idempotency key of one ticket operation for one sink."""
    return f"ticket:{incident_id}:{sink}:{seq}"


class Tickets:
    """The incident listener that owns tickets, and the source of the sinks' outbox handlers."""

    def __init__(self, config: Config, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._sinks: dict[str, Sink] = {}
        self.reload(config)

    def reload(self, config: Config) -> None:
        """Adopt a new config (SIGHUP): sinks are rebuilt; queued ops keep their content."""
        self._config = config
        self._sinks = {
            name: registry.build(cfg) for name, cfg in config.tickets.sinks.items() if cfg.enabled
        }

    def handlers(self) -> dict[str, Handler]:
        """Outbox handlers by kind (`ticket:<sink>`) for every configured sink."""
        return {f"ticket:{name}": self._handler(name) for name in self._config.tickets.sinks}

    def _handler(self, name: str) -> Callable[[OutboxItem], Awaitable[str | None]]:
        async def handle(item: OutboxItem) -> str | None:
            return await self._deliver(name, item)

        return handle

    # ---- incident changes ------------------------------------------------------------------

    async def on_incident(
        self, conn: aiosqlite.Connection, incident: Incident, event: IncidentEvent
    ) -> None:
        """Open or update the incident's ticket (inside the caller's transaction)."""
        if not self._config.tickets.enabled:
            return
        ticket = await db.by_incident(conn, incident.id)
        if ticket is None:
            if incident.suppressed is None and incident.state is not IncidentState.RESOLVED:
                await self._open(conn, incident, event)
            return
        if event.kind is IncidentEventKind.OPENED:
            return  # a replayed open: the ticket exists already
        ticket, action, kind, text = self._change(ticket, incident, event)
        await self._record(conn, ticket, incident, action, kind, text, event.by, event.at)

    async def _open(
        self, conn: aiosqlite.Connection, incident: Incident, event: IncidentEvent
    ) -> None:
        cfg = self._config
        plan_name, plan = sla.plan_of(cfg, describe.customer_of(cfg, incident))
        start = incident.opened_at
        prio = sla.priority(plan, incident.severity)
        ticket = await db.insert(
            conn,
            Ticket(
                id=0,
                incident_id=incident.id,
                fingerprint=fingerprint(incident),
                status=_STATUS[incident.state],
                priority=prio,
                worst_priority=prio,
                title=incident.title,
                description=describe.description(cfg, incident),
                facts=describe.facts(cfg, incident),
                plan=plan_name,
                opened_at=start,
                response_due=sla.response_due(cfg, plan, incident.severity, start),
                resolve_due=sla.resolve_due(cfg, plan, incident.severity, start),
                responded_at=incident.acked_at,
                resolved_at=None,
                closed_at=None,
                rfo_due=None,
                rfo_delivered_at=None,
                rfo_delivered_by=None,
                seq=0,
                updated_at=event.at,
            ),
        )
        due = iso(ticket.response_due) if ticket.response_due else "none"
        text = (
            f"Ticket opened: {prio} ({incident.severity}), plan {plan_name or 'default'}, "
            f"response due {due}."
        )
        await self._record(conn, ticket, incident, "create", "opened", text, event.by, event.at)

    def _change(
        self, t: Ticket, incident: Incident, event: IncidentEvent
    ) -> tuple[Ticket, Action, str, str]:
        """The ticket after `event`, the sink action, the comment kind and the comment text."""
        cfg = self._config
        _, plan = sla.plan_of(cfg, describe.customer_of(cfg, incident))
        t = t.changed(title=incident.title, description=describe.description(cfg, incident))
        kind = str(event.kind)
        if event.kind is IncidentEventKind.SEVERITY:
            t, text = self._reclass(t, incident, event, plan)
            return t, "update", kind, text
        if event.kind is IncidentEventKind.ACKNOWLEDGED:
            t = t.changed(
                status=TicketStatus.ACKNOWLEDGED,
                responded_at=t.responded_at if t.responded_at is not None else event.at,
            )
            return t, "update", kind, f"Acknowledged by {event.by} via {event.via}. {_met(t)}"
        if event.kind is IncidentEventKind.RESOLVED:
            return self._resolved(t, incident, event)
        if event.kind is IncidentEventKind.NOTE:
            return t, "update", kind, f"Note by {event.by}: {event.text}"
        return t, "update", kind, event.text or f"Incident {kind}."

    def _reclass(
        self, t: Ticket, incident: Incident, event: IncidentEvent, plan: SupportPlan
    ) -> tuple[Ticket, str]:
        """New priority and due times after a severity change.

        Up: the new class's target counts from the change, but never extends the old due time.
        Down: the lower class's target counts from the opening (the customer waited since).
        """
        cfg = self._config
        sev = incident.severity
        prio = sla.priority(plan, sev)
        up = event.previous is None or sev.rank > event.previous.rank
        start = event.at if up else t.opened_at
        resp = sla.response_due(cfg, plan, sev, start)
        reso = sla.resolve_due(cfg, plan, sev, start)
        pick = min if up else max
        if t.response_due is not None and t.responded_at is None:
            t = t.changed(response_due=pick(t.response_due, resp))
        if t.resolve_due is not None and reso is not None:
            t = t.changed(resolve_due=pick(t.resolve_due, reso))
        worst = min(t.worst_priority, prio)  # "P1" < "P2": lower text is more urgent
        old = t.priority
        t = t.changed(priority=prio, worst_priority=worst)
        direction = "rose" if up else "fell"
        prev = f" from {event.previous}" if event.previous else ""
        text = f"Severity {direction}{prev} to {sev}: priority {old} → {prio}."
        if t.responded_at is None and t.response_due is not None:
            text += f" Response due {iso(t.response_due)}."
        return t, text

    def _resolved(
        self, t: Ticket, incident: Incident, event: IncidentEvent
    ) -> tuple[Ticket, Action, str, str]:
        """Resolve the ticket; it closes at once unless its worst priority owes an RFO."""
        at = incident.resolved_at or event.at
        owed = self._config.tickets.rfo_due.get(t.worst_priority)  # type: ignore[call-overload]
        took = format_duration(at - t.opened_at)
        text = f"Resolved by {event.by} via {event.via} after {took}."
        if event.text:
            text += f" {event.text}."
        if owed is None:
            t = t.changed(status=TicketStatus.CLOSED, resolved_at=at, closed_at=at)
            return t, "resolve", "resolved", text + " Closed: no RFO is owed."
        t = t.changed(status=TicketStatus.RESOLVED, resolved_at=at, rfo_due=at + owed)
        return t, "resolve", "resolved", text + f" RFO due {iso(at + owed)}."

    async def mark_rfo_delivered(
        self, conn: aiosqlite.Connection, incident_id: int, now: float, by: str
    ) -> bool:
        """Record that the RFO was delivered; the ticket closes. False when none is owed."""
        t = await db.by_incident(conn, incident_id)
        if t is None or t.rfo_due is None or t.rfo_delivered_at is not None:
            return False
        incident = await load(conn, incident_id)
        if incident is None:
            return False
        late = f" ({format_duration(now - t.rfo_due)} late)" if now > t.rfo_due else ""
        t = t.changed(
            rfo_delivered_at=now, rfo_delivered_by=by, status=TicketStatus.CLOSED, closed_at=now
        )
        text = f"RFO delivered by {by}{late}. Closed."
        await self._record(conn, t, incident, "close", "closed", text, by, now)
        return True

    async def comment(
        self,
        conn: aiosqlite.Connection,
        incident: Incident,
        at: float,
        kind: str,
        text: str,
        by: str = "nocd",
    ) -> bool:
        """Comment on the incident's ticket (e.g. kind "escalation"); False without a ticket."""
        # For changes that are not incident events (paging escalations); sent like updates.
        t = await db.by_incident(conn, incident.id)
        if t is None or not self._config.tickets.enabled:
            return False
        await self._record(conn, t, incident, "update", kind, text, by, at)
        return True

    # ---- recording and delivery ------------------------------------------------------------

    async def _record(
        self,
        conn: aiosqlite.Connection,
        t: Ticket,
        incident: Incident,
        action: Action,
        kind: str,
        text: str,
        by: str,
        at: float,
    ) -> None:
        """Save the ticket, add comment number seq+1, a timeline event and the sinks' ops."""
        t = t.changed(seq=t.seq + 1, updated_at=at)
        await db.save(conn, t)
        await db.add_comment(conn, Comment(t.id, t.seq, at, kind, by, text))
        await add_event(
            conn,
            incident.id,
            at,
            "ticket",
            f"ticket #{t.id} {t.priority} {t.status}: {text}",
            {"ticket": t.id, "seq": t.seq, "action": action, "priority": t.priority},
        )
        view = TicketView(
            t.id,
            incident.id,
            incident.code,
            t.fingerprint,
            t.title,
            t.description,
            t.priority,
            str(t.status),
            t.opened_at,
            t.response_due,
            t.resolve_due,
            incident.site,
            incident.customer,
            t.facts,
        )
        for name, cfg in self._config.tickets.sinks.items():
            if not cfg.enabled:
                continue
            key = outbox_key(incident.id, name, t.seq)
            op = TicketOp(action, t.seq, key, at, text, view)
            await enqueue(conn, key, f"ticket:{name}", op.to_payload(), at, incident.id)

    async def _deliver(self, name: str, item: OutboxItem) -> str | None:
        """Send one op to sink `name`, after every earlier op of the same ticket for it."""
        op = TicketOp.from_payload(item.payload)
        sink = self._sinks.get(name)
        if sink is None:
            raise DeliveryError(f"ticket sink {name!r} is not configured (or disabled)", False)
        async with self._store.transaction() as conn:
            async with conn.execute(
                "SELECT MAX(not_before) FROM outbox WHERE kind=? AND incident_id=? "
                "AND state IN ('pending','sending') AND id != ? "
                "AND json_extract(payload, '$.seq') < ?",
                (item.kind, item.incident_id, item.id, op.seq),
            ) as cur:
                row = await cur.fetchone()
            pid = await db.provider_id(conn, op.ticket.number, name)
        if row and row[0] is not None:
            wait = max(1.0, float(row[0]) - self._clock.now() + 0.5)
            reason = f"waiting for an earlier op of ticket #{op.ticket.number}"
            raise DeliveryError(reason, True, wait)
        result = await sink.send(op.delivering(pid, in_doubt=item.attempts > 1))
        if result != pid:
            now = self._clock.now()
            async with self._store.transaction() as conn:
                await db.set_provider_id(conn, op.ticket.number, name, result, now)
                await add_event(
                    conn,
                    op.ticket.incident_id,
                    now,
                    "ticket",
                    f"ticket #{op.ticket.number} is {result} at {name}",
                    {"ticket": op.ticket.number, "sink": name, "provider_id": result},
                )
        return result


def _met(t: Ticket) -> str:
    """Whether the acknowledgement met the response target."""
    if t.response_due is None or t.responded_at is None:
        return ""
    delta = t.responded_at - t.response_due
    if delta <= 0:
        return f"Response target met ({format_duration(-delta)} to spare)."
    return f"Response target missed by {format_duration(delta)}."
