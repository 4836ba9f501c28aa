"""The pager: incident listener, due-step runner and outbox handlers, over the store.

Contract for the lead:
    pager = Pager(store, paging_cfg, calendars, notifier, clock, public_url=None, ical=None)
    await pager.on_incident(conn, incident, event)   # IncidentListener, inside the txn
    await pager.run_due(now)                         # every second; its own transaction
    worker.register("notify", pager.deliver_notify)  # OutboxItem -> provider id
    worker.register("digest", pager.deliver_digest)
    pager.configure(paging_cfg, calendars, public_url, ical, notifier=None)   # on SIGHUP
    pager.on_wake = worker.wake                      # optional: deliver without polling lag
    pager.on_due = event.set                         # optional: a step is due now, run run_due
    pipeline.handlers.append(pager.fire_in_flush)    # optional, last: fire in the flush itself
    pager.fire_in_flush_enabled = True
    pager.memory = MemoryPager(...)                  # optional: pages while the store can't write
Webhooks (paging.webhooks) use `page`, `on_status`, `person_by_number`, `seen`/`remember`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiosqlite
import structlog

from nocd.calendar_config import CalendarConfig
from nocd.clock import Clock
from nocd.delivery import DeliveryError
from nocd.incidents.model import Incident, IncidentEvent, IncidentEventKind, IncidentState, load
from nocd.incidents.timeline import add_event
from nocd.outbox import OutboxItem
from nocd.store import Store
from paging import digest, escalation
from paging.config import PagingConfig
from paging.digest_mail import digest_message, send_digest_email
from paging.handover import adopt, carry_over
from paging.memory import MemoryPager
from paging.messages import KEYS_PROMPT
from paging.notifiers import Notifier, PageRequest
from paging.routing import decide
from paging.schedules import IcalShifts
from paging.stalled import fall_back_stalled
from paging.tracking import (
    CALL_FAILED,
    FINAL,
    SMS_FAILED,
    PageRecord,
    call_failed,
    fallback,
    load_page,
)
from paging.twiml import say_only
from paging.walljumps import WallClockJumps, shift_deadlines

log = structlog.get_logger(__name__)


class Pager:
    """Decides, escalates and delivers pages for incidents."""

    def __init__(
        self,
        store: Store,
        paging: PagingConfig,
        calendars: Mapping[str, CalendarConfig],
        notifier: Notifier,
        clock: Clock,
        public_url: str | None = None,
        ical: Mapping[str, IcalShifts] | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._jumps = WallClockJumps(clock)  # a stepped wall clock must not skip/stretch waits
        self.on_wake: Callable[[], None] | None = None
        # Called when a step became due now (escalation started, a call went unanswered), so
        # the caller's loop runs run_due at once instead of at its next poll.
        self.on_due: Callable[[], None] | None = None
        # True when the daemon runs `fire_in_flush` as the pipeline's last batch handler.
        self.fire_in_flush_enabled = False
        self._due_in_flush = False
        # Pages sent from memory while the store refused writes (set by the daemon).
        self.memory: MemoryPager | None = None
        self.configure(paging, calendars, public_url, ical)

    def configure(
        self,
        paging: PagingConfig,
        calendars: Mapping[str, CalendarConfig],
        public_url: str | None,
        ical: Mapping[str, IcalShifts] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """Swap in a new config (SIGHUP); escalations in flight continue by policy name.

        Pass `notifier` when the provider section changed (the caller closes the old one).
        """
        if notifier is not None:
            self._notifier = notifier
        self.paging = paging
        self.calendars = dict(calendars)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.ical = dict(ical or {})
        # Stalled pages whose fallback was already decided (paging.stalled): the new config
        # may decide otherwise (fallback switched on, a number added), so look again.
        self._stalled_done: frozenset[str] = frozenset()

    def set_ical(self, ical: Mapping[str, IcalShifts]) -> None:
        """Swap in freshly fetched iCal shifts (see paging.ical_feed.IcalFeeds)."""
        self.ical = dict(ical)

    @property
    def notifier(self) -> Notifier:
        """The configured notifier."""
        return self._notifier

    # ---- incident listener -------------------------------------------------------------

    async def on_incident(
        self, conn: aiosqlite.Connection, incident: Incident, event: IncidentEvent
    ) -> None:
        """React to an incident change inside the caller's transaction."""
        kind = event.kind
        if kind is IncidentEventKind.OPENED or kind is IncidentEventKind.SEVERITY:
            await self._route(conn, incident, event)
        elif kind is IncidentEventKind.ACKNOWLEDGED or kind is IncidentEventKind.RESOLVED:
            verb = "acknowledged" if kind is IncidentEventKind.ACKNOWLEDGED else "resolved"
            why = f"{verb} by {event.by} via {event.via}"
            if await escalation.stop(conn, incident.id, event.at, why):
                await add_event(conn, incident.id, event.at, "page", f"escalation stopped: {why}")
                log.info("escalation stopped", incident=incident.code, reason=why)
            if kind is IncidentEventKind.RESOLVED and await digest.drop(
                conn, incident.id, event.at
            ):
                await add_event(
                    conn,
                    incident.id,
                    event.at,
                    "digest",
                    "resolved: dropped from the pending digest",
                )

    async def _route(self, conn: aiosqlite.Connection, inc: Incident, event: IncidentEvent) -> None:
        if event.kind is IncidentEventKind.SEVERITY:
            rising = event.previous is None or event.previous.rank < inc.severity.rank
            if not rising or inc.state is not IncidentState.TRIGGERED:
                return
        mem = self.memory.handover(inc.group_key) if self.memory is not None else None
        if mem is not None and event.kind is IncidentEventKind.OPENED:
            # Already paged from memory while the store refused writes: the stored escalation
            # takes over where that one stands, so no step is sent twice.
            await adopt(conn, self._store, mem, inc)
            log.warning("escalation handed over from memory", incident=inc.code, step=mem.step)
            self._due_now(in_flush=True)
            return
        if not self.paging.enabled:
            await add_event(conn, inc.id, event.at, "routing", "paging is disabled: no page")
            return
        if inc.suppressed:
            await add_event(
                conn,
                inc.id,
                event.at,
                "routing",
                f"no page: raised during maintenance/silence {inc.suppressed}",
            )
            return
        d = decide(inc.severity, inc.site, inc.customer, event.at, self.paging, self.calendars)
        await add_event(
            conn,
            inc.id,
            event.at,
            "routing",
            d.reason,
            {
                "page": d.page_now,
                "ticket": d.ticket,
                "digest": d.digest,
                "policy": d.policy,
                "route": d.route,
                "in_hours": d.in_hours,
            },
        )
        if d.page_now:
            if d.policy is None or d.policy not in self.paging.escalation_policies:
                text = f"NOT PAGED: no escalation policy configured for route {d.route}"
                await add_event(conn, inc.id, event.at, "page", text, {"error": True})
                log.error("cannot page: no escalation policy", incident=inc.code, route=d.route)
            elif await escalation.start(conn, inc.id, d.policy, event.at):
                self._due_now(in_flush=True)
                await add_event(
                    conn,
                    inc.id,
                    event.at,
                    "page",
                    f"escalation started: policy {d.policy}",
                    {"policy": d.policy},
                )
        if d.digest and d.digest_at is not None:
            await digest.hold(conn, inc.id, d.route, d.digest_at, d.digest_to, event.at)

    def _due_now(self, in_flush: bool = False) -> None:
        if in_flush and self.fire_in_flush_enabled:
            self._due_in_flush = True  # fired by fire_in_flush at the end of this transaction
            return
        # Set inside the caller's transaction: the woken loop's own transaction waits for it.
        if self.on_due is not None:
            self.on_due()

    async def fire_in_flush(self, conn: aiosqlite.Connection, now: float) -> int:
        """Pipeline batch handler (last): fire the steps this flush made due, in its transaction.

        Saves the paging loop's own transaction and wake-up between the decision and the
        page row; every incident of the batch is fired together, so a storm still bundles.
        A failure here is rolled back to a savepoint and left to the paging loop.
        """
        if not self._due_in_flush:
            return 0
        self._due_in_flush = False
        await conn.execute("SAVEPOINT fire_in_flush")
        try:
            await self._carry_over(conn, now)
            await escalation.fire_due(conn, self.paging, now, self.ical)
            pages = await escalation.flush_queue(conn, self.paging, now)
        except Exception as exc:  # noqa: BLE001 - the incident must still commit; the loop retries
            await conn.execute("ROLLBACK TO fire_in_flush")
            log.error("firing due steps in the flush failed; the paging loop will", error=repr(exc))
            pages = 0
            if self.on_due is not None:
                self.on_due()
        finally:
            await conn.execute("RELEASE fire_in_flush")
        return pages

    # ---- the loop's tick -----------------------------------------------------------------

    async def run_due(self, now: float) -> int:
        """Fire due steps, release rate-capped bundles and due digests; returns rows queued."""
        jump = self._jumps.check()
        async with self._store.transaction() as conn:
            if jump:
                await shift_deadlines(conn, jump, now)
            await self._carry_over(conn, now)
            await escalation.fire_due(conn, self.paging, now, self.ical)
            pages = await escalation.flush_queue(conn, self.paging, now)
            digests = await digest.release_due(conn, self.paging, now)
            fell_back, stalled = await fall_back_stalled(
                conn, self.paging, now, self._stalled_done
            )
        self._stalled_done = stalled  # only once committed: a rollback must look again
        if (pages or digests or fell_back) and self.on_wake is not None:
            self.on_wake()
        return pages + digests + fell_back

    async def _carry_over(self, conn: aiosqlite.Connection, now: float) -> None:
        """Before any step fires: stored escalations sent on from memory take its position."""
        if self.memory is not None:
            for mem in self.memory.stored_pending():
                await carry_over(conn, self._store, mem, now)
                log.warning("escalation carried over from memory", incident=mem.code, step=mem.step)

    # ---- outbox handlers -----------------------------------------------------------------

    async def page(self, key: str) -> PageRecord | None:
        """The stored page with this key."""
        return await load_page(self._store.reader, key)

    def request_for(self, rec: PageRecord) -> PageRequest:
        """The notifier request for a stored page (URLs from the configured public URL)."""
        base = self.public_url
        if rec.channel == "voice":
            return PageRequest(
                rec.key,
                "voice",
                rec.number,
                rec.text,
                voice_url=f"{base}/twilio/voice/{rec.key}" if base else None,
                status_url=f"{base}/twilio/status/{rec.key}" if base else None,
                twiml=None if base else say_only(f"{rec.text} {KEYS_PROMPT}", 2),
            )
        return PageRequest(
            rec.key,
            "sms",
            rec.number,
            rec.text,
            status_url=f"{base}/twilio/status/{rec.key}" if base else None,
        )

    async def deliver_notify(self, item: OutboxItem) -> str:
        """Outbox handler for `notify`: reconcile an in-doubt send, else send once."""
        rec = await self.page(item.key)
        if rec is None:
            raise DeliveryError(f"page {item.key} has no record", retryable=False)
        live = await self._live(rec.incident_ids)
        now = self._clock.now()
        if not live:
            await self._set_status(
                rec, "cancelled", None, "page not sent: incident already acknowledged or resolved"
            )
            return "cancelled"
        if rec.provider_id is not None and rec.status != "queued":
            return rec.provider_id  # sent and recorded; only the outbox row was left behind
        req = self.request_for(rec)
        if item.attempts > 1 and rec.first_attempt_at is not None:
            async with self._store.reader.execute(
                "SELECT provider_id FROM paging_pages WHERE provider_id IS NOT NULL AND key != ? "
                "AND number=? AND created_at > ?",
                (rec.key, rec.number, rec.first_attempt_at - 86400),
            ) as cur:
                claimed = frozenset(str(r[0]) for r in await cur.fetchall())
            found = await self._notifier.find_sent(req, rec.first_attempt_at, claimed)
            if found is not None:
                await self._set_status(
                    rec,
                    "sent",
                    found,
                    f"reconciled: an earlier {rec.channel} attempt reached "
                    f"the provider ({found}); not sent again",
                )
                return found
        if rec.first_attempt_at is None:
            # Record the intent before the send, so a crash leaves the send marked in doubt.
            async with self._store.transaction() as conn:
                await conn.execute(
                    "UPDATE paging_pages SET first_attempt_at=? WHERE key=?", (now, rec.key)
                )
        try:
            sid = await self._notifier.send(req)
        except DeliveryError as exc:
            if not exc.retryable:
                await self._permanent_failure(rec, exc.reason)
            raise
        dry = "DRY-RUN (not sent): " if self._notifier.dry_run else ""
        verb = "call" if rec.channel == "voice" else "SMS"
        await self._set_status(
            rec, "sent", sid, f"{dry}{verb} to {rec.person} ({rec.number}) sent: {sid}"
        )
        return sid

    async def deliver_digest(self, item: OutboxItem) -> str:
        """Outbox handler for `digest`: one SMS of still-open incidents (skipped if none)."""
        ids = tuple(int(i) for i in item.payload.get("incidents", []))
        if not ids:
            return "skipped: no incidents"
        async with self._store.reader.execute(
            f"SELECT COUNT(*) FROM incidents WHERE id IN ({','.join('?' * len(ids))}) "
            "AND state != 'resolved'",
            ids,
        ) as cur:
            row = await cur.fetchone()
        if row is None or int(row[0]) == 0:
            return "skipped: all resolved"
        if item.payload.get("channel") == "email":
            return await self._mail_digest(item, ids)
        req = PageRequest(item.key, "sms", str(item.payload["to"]), str(item.payload["text"]))
        if item.attempts > 1:
            found = await self._notifier.find_sent(req, self._clock.now() - 86400)
            if found is not None:
                return found
        sid = await self._notifier.send(req)
        dry = "DRY-RUN (not sent): " if self._notifier.dry_run else ""
        async with self._store.transaction() as conn:
            for i in ids:
                await add_event(
                    conn,
                    i,
                    self._clock.now(),
                    "digest",
                    f"{dry}digest SMS to {item.payload.get('person')} sent: {sid}",
                )
        return sid

    async def _mail_digest(self, item: OutboxItem, ids: tuple[int, ...]) -> str:
        cfg = self.paging.digest_email
        if cfg is None:
            raise DeliveryError("digest_email is no longer configured", retryable=False)
        now = self._clock.now()
        msg = digest_message(
            cfg, item.key, str(item.payload["subject"]), str(item.payload["text"]), now
        )
        # A resend after a crash keeps its Message-ID, so the receiving desk can drop repeats.
        message_id = await send_digest_email(cfg, msg)
        async with self._store.transaction() as conn:
            for i in ids:
                await add_event(
                    conn,
                    i,
                    now,
                    "digest",
                    f"digest email to {', '.join(cfg.to)} sent: {message_id}",
                )
        return message_id

    # ---- delivery tracking -------------------------------------------------------------

    async def _live(self, ids: tuple[int, ...]) -> list[int]:
        if not ids:
            return []
        async with self._store.reader.execute(
            f"SELECT id FROM incidents WHERE id IN ({','.join('?' * len(ids))}) "
            "AND state='triggered'",
            ids,
        ) as cur:
            return [int(r[0]) for r in await cur.fetchall()]

    async def _set_status(
        self, rec: PageRecord, status: str, provider_id: str | None, text: str
    ) -> None:
        now = self._clock.now()
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE paging_pages SET status=?, provider_id=COALESCE(?, provider_id), "
                "updated_at=? WHERE key=?",
                (status, provider_id, now, rec.key),
            )
            for i in rec.incident_ids:
                await add_event(
                    conn,
                    i,
                    now,
                    "delivery",
                    text,
                    {
                        "key": rec.key,
                        "status": status,
                        "provider_id": provider_id,
                        "dry_run": self._notifier.dry_run,
                    },
                )
        log.info("page status", key=rec.key, status=status, provider_id=provider_id)

    async def _permanent_failure(self, rec: PageRecord, reason: str) -> None:
        now = self._clock.now()
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE paging_pages SET status='failed', updated_at=? WHERE key=?",
                (now, rec.key),
            )
            for i in rec.incident_ids:
                await add_event(
                    conn,
                    i,
                    now,
                    "delivery",
                    f"{rec.channel} to {rec.person} failed: {reason}",
                    {"key": rec.key},
                )
            await fallback(conn, self.paging, rec, now)
        if self.on_wake is not None:
            self.on_wake()

    async def on_status(self, key: str, status: str, answered_by: str | None = None) -> bool:
        """Record a provider status callback; returns False for an unknown page.

        `completed` is never an ack (voicemail completes calls). A call ending no-answer,
        busy, failed or canceled is redialled (`redial` times), then falls back to SMS and
        the escalation moves to its next step now instead of waiting the full step time.
        """
        rec = await self.page(key)
        if rec is None:
            return False
        status = status.strip().lower()
        if rec.status == status or rec.status in FINAL or not status:
            return True  # a replay, or a late intermediate status: nothing changes
        now = self._clock.now()
        verb = "call" if rec.channel == "voice" else "SMS"
        text = f"{verb} to {rec.person}: {status}"
        if answered_by:
            text += f" (answered by {answered_by})"
        if status == "completed" and rec.channel == "voice":
            text += " — not an acknowledgement"
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE paging_pages SET status=?, updated_at=? WHERE key=?", (status, now, key)
            )
            for i in rec.incident_ids:
                await add_event(
                    conn,
                    i,
                    now,
                    "delivery",
                    text,
                    {"key": key, "status": status, "answered_by": answered_by},
                )
            if rec.channel == "voice" and status in CALL_FAILED:
                await call_failed(conn, self.paging, rec, now)
                self._due_now()  # the next step may now be due
            elif rec.channel == "sms" and status in SMS_FAILED:
                await fallback(conn, self.paging, rec, now)
        if self.on_wake is not None:
            self.on_wake()
        return True

    # ---- helpers for webhooks ----------------------------------------------------------

    def person_by_number(self, number: str) -> str | None:
        """The person key whose phone or SMS number is `number`."""
        n = number.replace(" ", "")
        for key, p in self.paging.people.items():
            if n in (p.phone, p.sms):
                return key
        return None

    async def incidents_of(self, rec: PageRecord) -> list[Incident]:
        """The incidents a page is about."""
        out = []
        for i in rec.incident_ids:
            inc = await load(self._store.reader, i)
            if inc is not None:
                out.append(inc)
        return out

    async def open_codes_paged_to(self, person: str) -> list[str]:
        """Codes of unresolved incidents that were paged to `person`."""
        async with self._store.reader.execute(
            "SELECT DISTINCT i.code FROM paging_pages p "
            "JOIN paging_page_incidents x ON x.key = p.key "
            "JOIN incidents i ON i.id = x.incident_id "
            "WHERE p.person=? AND i.state != 'resolved' ORDER BY i.code",
            (person,),
        ) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def seen(self, request_id: str) -> str | None:
        """The reply already given to a webhook request id (replay), or None."""
        async with self._store.reader.execute(
            "SELECT reply FROM paging_webhook_seen WHERE id=?", (request_id,)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def remember(self, request_id: str, reply: str) -> None:
        """Remember the reply given to a webhook request id."""
        async with self._store.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO paging_webhook_seen (id, at, reply) VALUES (?, ?, ?)",
                (request_id, self._clock.now(), reply),
            )

    async def note(self, incident_ids: list[int], kind: str, text: str) -> None:
        """Append a timeline event to several incidents (webhook actions)."""
        now = self._clock.now()
        async with self._store.transaction() as conn:
            for i in incident_ids:
                await add_event(conn, i, now, kind, text)
