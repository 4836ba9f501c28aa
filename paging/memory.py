"""Paging from memory: while the store refuses writes, outages still page, once per step.

A page is normally sent only from the outbox, in the same SQLite database as the incident,
which makes it exactly-once across crashes. When that database cannot be written (disk
full, read-only, I/O error) no incident can be opened, so no page could go out. This is
the second, independent path: every paging-loop pass while the store is unwritable, the
outages known only in memory (`IncidentEngine.unrecorded`: same grouping, severity,
maintenance and silences) go through the same routing decision; those that page start an
escalation kept here, whose steps are sent through the same notifier. One outage (group)
pages once per step; pages to one person are bundled and spaced like the stored path.

When the store accepts writes again, the pipeline's flush opens the incident: it takes the
code already sent in the pages, and `paging.handover.adopt` writes these pages and the
escalation's position into the store, so the stored path carries on at the next step and
does not page again for a step already sent. Acks taken by phone meanwhile are kept here
and applied when the incident is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from nocd.clock import Clock
from nocd.delivery import DeliveryError
from nocd.incidents.engine import random_code
from nocd.incidents.model import Incident, IncidentState, PagedFromMemory, Unrecorded
from nocd.model import Severity
from nocd.outbox import backoff
from nocd.store import Store
from paging.config import Channel
from paging.escalation import step_targets
from paging.messages import sms_text, voice_text
from paging.routing import decide
from paging.tracking import PageRecord

if TYPE_CHECKING:
    from paging.pager import Pager

log = structlog.get_logger(__name__)

NOTE = "nocd cannot write its database; sent from memory."


@dataclass(slots=True)
class MemPage:
    """One page sent (or being sent) from memory."""

    key: str
    person: str
    channel: Channel
    number: str
    text: str
    groups: tuple[str, ...]
    step: int | None
    repeat: int | None
    at: float
    sid: str | None = None
    status: str = "sending"  # sending | sent | failed
    attempts: int = 0
    not_before: float = 0.0
    first_attempt_at: float | None = None


@dataclass(slots=True)
class MemOutage:
    """An outage's escalation, kept in memory until its incident is written."""

    group: str
    code: str
    site: str | None
    customer: str | None
    severity: Severity
    title: str
    policy: str
    started_at: float
    reason: str  # the routing decision
    step: int = 0
    repeat: int = 0
    next_fire_at: float = 0.0
    state: str = "active"  # active | exhausted | acked | recovered | stopped
    acked: tuple[str, str, float] | None = None
    pages: list[MemPage] = field(default_factory=list)
    adopted: bool = False  # written into the store by a transaction (maybe not committed yet)
    recorded: bool = False  # that transaction committed
    stored_id: int | None = None  # an escalation already stored whose steps came due meanwhile
    stored_from: tuple[int, int] | None = None  # its stored (step, repeat) when memory took it

    def incident(self) -> Incident:
        """A stand-in incident (id 0) so the page texts read as the stored path's do."""
        return Incident(
            0, self.code, self.group, self.site, self.customer, self.severity,
            IncidentState.TRIGGERED, self.title, None, self.started_at,
            None, None, None, None, None,
        )  # fmt: skip


class MemoryPager:
    """Escalations of outages the store could not record, sent straight from memory."""

    def __init__(
        self,
        pager: Pager,
        store: Store,
        outages: Callable[[float], list[Unrecorded]],
        failing: Callable[[str], bool],
        clock: Clock,
        registry: CollectorRegistry,
    ) -> None:
        self._pager = pager
        self._store = store
        self._outages = outages
        self._failing = failing  # whether a group still has a failing check (memory only)
        self._clock = clock
        self.outages: dict[str, MemOutage] = {}  # group → escalation
        self._declined: dict[str, str] = {}  # group → why it does not page (logged once)
        self._queue: dict[tuple[str, Channel], list[tuple[MemOutage, int, int]]] = {}
        self._pages: dict[str, MemPage] = {}
        self._last: dict[tuple[str, str], list[float]] = {}  # memory pages per person/channel
        self.seen: dict[str, str] = {}  # webhook replies given while the store was unwritable
        self._acks: list[tuple[str, str, str]] = []  # acks of stored incidents, to apply later
        self.store_error: str | None = None
        self.active = Gauge(
            "nocd_paging_from_memory",
            "1 while pages go out from memory because the state database refuses writes.",
            registry=registry,
        )
        self.sent = Counter(
            "nocd_memory_pages",
            "Pages sent from memory while the state database refused writes.",
            ["channel"],
            registry=registry,
        )

    # ---- the paging loop's pass ----------------------------------------------------------

    async def run(self, now: float, writable: bool, reason: str | None = None) -> int:
        """One pass: find outages (store unwritable), fire due steps, send; returns pages sent."""
        held: set[str] = set()
        if not writable:
            self.store_error = reason
            self._discover(now)
            await self._discover_stored(now)
        elif self.outages or self._declined:
            self._settle(now)
            # Writable: the store drives every escalation it has (or is writing now, or will
            # carry over before firing); memory only goes on for groups still unrecorded.
            current = {u.group for u in self._outages(now)} if self.outages else set()
            held = {
                g for g, o in self.outages.items() if o.stored_id is not None or g not in current
            }
        self._fire(now, held)
        sent = await self._send(now)
        live = any(not o.recorded and g not in held for g, o in self.outages.items())
        self.active.set(1 if (not writable or live) else 0)
        return sent

    def _discover(self, now: float) -> None:
        current = {u.group: u for u in self._outages(now)}
        for g, u in current.items():
            o = self.outages.get(g)
            if o is not None:
                o.title, o.severity = u.title, u.severity  # later steps say what fails now
                if o.state == "recovered":  # failing again before it could be recorded
                    o.state = "active"
                continue
            if g in self._declined:
                continue
            policy, why = self._decide(u, now)
            if policy is None:
                self._declined[g] = why
                log.warning("store unwritable; outage not paged from memory", group=g, reason=why)
                continue
            o = MemOutage(
                g, self._new_code(), u.site, u.customer, u.severity, u.title, policy, now, why,
                next_fire_at=now,
            )  # fmt: skip
            self.outages[g] = o
            log.error(
                "paging from memory, store unwritable",
                group=g,
                incident=o.code,
                title=u.title,
                policy=policy,
                decision=why,
                store_error=self.store_error,
            )
        for g, o in self.outages.items():
            # Not "not in current": a flush in flight may have put the group in the engine's
            # open set before its commit (current leaves those out), yet it still fails.
            if (
                o.stored_id is None
                and not o.adopted
                and o.state == "active"
                and not self._failing(g)
            ):
                o.state = "recovered"
                log.warning("outage paged from memory recovered before it was recorded", group=g)
        for g in [g for g in self._declined if g not in current]:
            del self._declined[g]

    def _settle(self, now: float) -> None:
        """Store writable again: forget what was handed over or ended unrecorded."""
        self._declined.clear()
        for g, o in list(self.outages.items()):
            # Only once the handover committed, or the outage ended unrecorded: a transaction
            # in flight may still roll back, and its retry needs the memory escalation.
            ended = o.stored_id is None and not o.adopted and not self._failing(g)
            if o.recorded or ended:
                if not o.recorded:
                    log.warning(
                        "outage paged from memory ended before its incident was written",
                        group=g,
                        incident=o.code,
                        pages=[p.key for p in o.pages],
                    )
                del self.outages[g]
                for p in o.pages:
                    if p.status != "sending":
                        self._pages.pop(p.key, None)

    async def _discover_stored(self, now: float) -> None:
        """Steps of stored escalations that came due: the store can be read, not written."""
        try:
            async with self._store.reader.execute(
                "SELECT e.incident_id, e.policy, e.step, e.repeat, e.next_fire_at, e.started_at, "
                "i.code, i.site, i.customer, i.severity, i.title FROM paging_escalations e "
                "JOIN incidents i ON i.id = e.incident_id WHERE e.state='active' "
                "AND i.state='triggered' AND e.next_fire_at <= ? LIMIT 200",
                (now,),
            ) as cur:
                rows = list(await cur.fetchall())
        except Exception as exc:  # noqa: BLE001 - an unreadable store: new outages still page
            log.error("cannot read stored escalations", error=str(exc))
            return
        for inc_id, policy, step, repeat, due, started, code, site, customer, sev, title in rows:
            g = f"incident:{inc_id}"
            if g in self.outages:
                continue
            o = MemOutage(
                g, code, site, customer, Severity(sev), title, policy, started,
                "escalation step due while the store refuses writes", step, repeat, due,
                stored_id=inc_id, stored_from=(step, repeat),
            )  # fmt: skip
            self.outages[g] = o
            log.error(
                "paging from memory, store unwritable",
                group=g,
                incident=code,
                title=title,
                policy=policy,
                decision=o.reason,
                store_error=self.store_error,
            )

    def stored_pending(self) -> list[MemOutage]:
        """Stored escalations moved on in memory, not yet carried over (see paging.handover)."""
        return [o for o in self.outages.values() if o.stored_id is not None and not o.adopted]

    def take_acks(self) -> list[tuple[str, str, str]]:
        """(code, by, via) of stored incidents acknowledged in memory, to apply now."""
        acks, self._acks = self._acks, []
        return acks

    def requeue_acks(self, acks: list[tuple[str, str, str]]) -> None:
        """Put back acks that could not be applied yet."""
        self._acks[:0] = acks

    def _decide(self, u: Unrecorded, now: float) -> tuple[str | None, str]:
        paging = self._pager.paging
        if not paging.enabled:
            return None, "paging is disabled"
        if u.suppressed is not None:
            return None, f"raised during maintenance/silence {u.suppressed}"
        d = decide(u.severity, u.site, u.customer, now, paging, self._pager.calendars)
        if not d.page_now:
            return None, d.reason
        if d.policy is None or d.policy not in paging.escalation_policies:
            log.error("cannot page from memory: no escalation policy", route=d.route)
            return None, f"no escalation policy configured for route {d.route}"
        return d.policy, d.reason

    def _new_code(self) -> str:
        taken = {o.code for o in self.outages.values()}
        code = random_code(4)  # 4 characters: unlikely to clash with a stored 3-letter code
        while code in taken:
            code = random_code(4)
        return code

    def _fire(self, now: float, held: set[str]) -> None:
        """Fire due steps into the per-person queue (as paging.escalation.fire_due does)."""
        paging = self._pager.paging
        for g, o in self.outages.items():
            if o.adopted or o.state != "active" or o.next_fire_at > now or g in held:
                continue
            policy = paging.escalation_policies.get(o.policy)
            if policy is None:
                o.state = "stopped"
                log.error("memory escalation stopped: policy gone", group=o.group, policy=o.policy)
                continue
            n, step, repeat = len(policy.steps), o.step, o.repeat
            if step >= n and repeat < policy.repeat:
                step, repeat = 0, repeat + 1
            if step > n or (step == n and policy.fallback is None):
                o.state = "exhausted"
                log.error("memory escalation exhausted: nobody acknowledged", incident=o.code)
                continue
            targets, warnings = step_targets(paging, policy, step, now, self._pager.ical)
            for t in targets:
                self._queue.setdefault((t.person, t.channel), []).append((o, step, repeat))
            wait = policy.steps[step].wait if step < n and targets else 0.0
            o.step, o.repeat, o.next_fire_at = step + 1, repeat, o.next_fire_at + wait
            if step >= n:
                o.state = "exhausted"
            log.warning(
                "memory escalation step fired",
                incident=o.code,
                step=step + 1,
                targets=[f"{t.person}/{t.channel}" for t in targets],
                warnings=warnings,
            )

    def _held(self, person: str, channel: str, now: float) -> bool:
        limits = self._pager.paging.rate_limits
        times = [t for t in self._last.get((person, channel), []) if now - t < limits.window]
        self._last[(person, channel)] = times
        cap = limits.voice if channel == "voice" else limits.sms
        return bool(times) and (now - times[-1] < limits.bundle_window or len(times) >= cap)

    def _bundle(self, now: float) -> list[MemPage]:
        """Turn queued steps into pages (one per person and channel); no await in here."""
        made: list[MemPage] = []
        for (person, channel), items in list(self._queue.items()):
            live = [i for i in items if i[0].state in ("active", "exhausted") and not i[0].adopted]
            person_cfg = self._pager.paging.people.get(person)
            number = person_cfg.number(channel) if person_cfg is not None else None
            if not live or number is None:
                del self._queue[(person, channel)]
                continue
            if self._held(person, channel, now):
                self._queue[(person, channel)] = live
                continue
            del self._queue[(person, channel)]
            outs = list({id(o): o for o, _, _ in live}.values())
            incs = [o.incident() for o in outs]
            if len(live) == 1:
                o, s, r = live[0]
                key, step, repeat = f"mem.{o.code}.{s}.{r}.{person}.{channel}", s, r
            else:
                h = hashlib.sha256(repr(sorted((o.code, s, r) for o, s, r in live)).encode())
                key, step, repeat = (
                    f"mem.b{outs[0].code}.{h.hexdigest()[:12]}.{person}.{channel}",
                    None,
                    None,
                )
            text = f"{voice_text(incs)} {NOTE}" if channel == "voice" else sms_text(incs, NOTE)
            page = MemPage(
                key, person, channel, number, text, tuple(o.group for o in outs), step, repeat, now
            )
            for o in outs:
                o.pages.append(page)
            self._pages[key] = page
            self._last.setdefault((person, channel), []).append(now)
            made.append(page)
        return made

    async def _send(self, now: float) -> int:
        due = self._bundle(now)
        due += [
            p for p in self._pages.values()
            if p.status == "sending" and p.attempts > 0 and p.not_before <= now
        ]  # fmt: skip
        sent = 0
        for page in due:
            sent += await self._send_one(page, now)
        return sent

    async def _send_one(self, page: MemPage, now: float) -> int:
        rec = PageRecord(
            page.key, page.person, page.channel, page.number, page.text, page.step,
            page.repeat, "queued", None, page.first_attempt_at, 0, (),
        )  # fmt: skip
        req = self._pager.request_for(rec)
        notifier = self._pager.notifier
        page.attempts += 1
        try:
            sid = None
            if page.first_attempt_at is not None:  # an earlier attempt may have got through
                sid = await notifier.find_sent(req, page.first_attempt_at)
            if sid is None:
                page.first_attempt_at = page.first_attempt_at or now
                sid = await notifier.send(req)
        except DeliveryError as exc:
            if exc.retryable:
                page.not_before = now + (exc.retry_after or backoff(page.attempts))
                log.warning("page from memory will retry", key=page.key, reason=exc.reason)
            else:
                page.status = "failed"
                log.error("page from memory failed", key=page.key, reason=exc.reason)
            return 0
        page.sid, page.status = sid, "sent"
        self.sent.labels(page.channel).inc()
        log.warning(
            "page sent from memory",
            key=page.key,
            person=page.person,
            channel=page.channel,
            provider_id=sid,
            dry_run=notifier.dry_run,
        )
        return 1

    # ---- handover and webhooks -----------------------------------------------------------

    def handover(self, group: str) -> MemOutage | None:
        """The memory escalation of `group` not yet written to the store."""
        o = self.outages.get(group)
        return o if o is not None and not o.adopted else None

    def paged(self, group: str) -> PagedFromMemory | None:
        """For the incident engine: the code and any ack to give the group's incident."""
        o = self.handover(group)
        return PagedFromMemory(o.code, o.acked) if o is not None else None

    def page(self, key: str) -> MemPage | None:
        """A page sent from memory, by key (the webhooks' fallback)."""
        return self._pages.get(key)

    def by_code(self, code: str) -> MemOutage | None:
        """A memory outage not yet written, by its incident code."""
        code = code.strip().upper()
        return next((o for o in self.outages.values() if o.code == code and not o.adopted), None)

    def codes_paged_to(self, person: str) -> list[str]:
        """Codes of unrecorded outages paged to `person` and not yet acknowledged."""
        return sorted(
            o.code
            for o in self.outages.values()
            if not o.adopted and o.acked is None and any(p.person == person for p in o.pages)
        )

    def ack(self, code: str, by: str, via: str) -> bool:
        """Acknowledge an unrecorded outage in memory: its escalation stops; False if unknown."""
        o = self.by_code(code)
        if o is None:
            return False
        if o.acked is None:
            o.acked, o.state = (by, via, self._clock.now()), "acked"
            if o.stored_id is not None:  # its incident exists: acknowledged once writes succeed
                self._acks.append((o.code, by, via))
            log.warning(
                "acknowledged in memory (store unwritable)", incident=o.code, by=by, via=via
            )
        return True
