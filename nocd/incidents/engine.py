"""The incident engine: one incident per outage group, kept in step with check states.

It runs inside the pipeline's flush transaction: for every group touched by a batch of
transitions it recomputes the members, severity (aggregate rules, dependencies) and
lifecycle, writes the incident, its members and timeline, and tells the listeners
(tickets, paging), whose outbox rows commit in the same transaction.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosqlite
import structlog

from checks.base import CheckConfig
from nocd.clock import Clock
from nocd.config import Config
from nocd.incidents import maintenance
from nocd.incidents.grouping import MemberView, aggregate_severity, failing_parents, group_key
from nocd.incidents.model import (
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentListener,
    IncidentState,
    PagedFromMemory,
    Unrecorded,
    load,
)
from nocd.incidents.timeline import add_event
from nocd.metrics import Metrics
from nocd.model import Severity
from nocd.pipeline import Change, Pipeline
from nocd.store import Store

log = structlog.get_logger(__name__)

_CODE_ALPHABET = (
    "ACDEFHJKLMNPQRTUVWXY3479"  # no 0/O, 1/I, 2/Z, 5/S, 8/B: read aloud and typed in SMS
)


def random_code(length: int = 3) -> str:
    """A random incident code of `length` characters, easy to read aloud and type.

    Never all digits: an all-digit reference is also read as an incident id (API, CLI, SMS
    `4 123`), so such a code could not be acked, or would ack another incident.
    """
    while True:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))
        if not code.isdigit():
            return code


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A listener and whether it sends pages (paging is muted by maintenance, tickets not)."""

    listener: IncidentListener
    pages: bool


class IncidentEngine:
    """Keeps incidents in step with check states; also the entry point for acks and resolves."""

    def __init__(self, config: Config, pipeline: Pipeline, clock: Clock, metrics: Metrics) -> None:
        self._pipeline = pipeline
        self._clock = clock
        self._metrics = metrics
        self.subscribers: list[Subscriber] = []
        self.silences: list[maintenance.Silence] = []
        self._open: dict[str, int] = {}  # group key → open incident id
        self._clear_since: dict[str, float] = {}  # group → when its last member recovered
        self._held_flapping: set[str] = set()
        # Open incidents opened suppressed (group → why): lifted once no longer covered.
        self._suppressed: dict[str, str] = {}
        # Set by the daemon: a refused commit undoes the in-memory side of a transaction
        # (else a rolled-back incident id stays "open" and the retry opens nothing).
        self.store: Store | None = None
        # Set by the daemon: what the memory pager already did for a group (code, ack).
        self.paged_from_memory: Callable[[str], PagedFromMemory | None] | None = None
        self.set_config(config)

    # ---- configuration ------------------------------------------------------------------

    def set_config(self, config: Config) -> None:
        """Rebuild the group and dependency indexes for a (re)loaded config."""
        self.config = config
        self._group_of: dict[str, str] = {}
        self._groups: dict[str, list[CheckConfig]] = defaultdict(list)
        self._parents: dict[str, tuple[str, ...]] = {}
        self._children: dict[str, list[str]] = defaultdict(list)
        for c in config.checks:
            g = group_key(c, config)
            self._group_of[c.name] = g
            self._groups[g].append(c)
            self._parents[c.name] = c.depends_on
            for p in c.depends_on:
                self._children[p].append(c.name)

    def subscribe(self, listener: IncidentListener, pages: bool = False) -> None:
        """Tell `listener` about every incident change (inside the same transaction)."""
        self.subscribers.append(Subscriber(listener, pages))

    async def load(self, conn: aiosqlite.Connection) -> None:
        """Restore the open incidents and silences at start-up."""
        async with conn.execute(
            "SELECT group_key, id, suppressed FROM incidents WHERE state != 'resolved'"
        ) as cur:
            rows = list(await cur.fetchall())
        self._open = {r[0]: r[1] for r in rows}
        self._suppressed = {r[0]: r[2] for r in rows if r[2] is not None}
        await self.load_silences(conn)

    async def load_silences(self, conn: aiosqlite.Connection) -> None:
        """Refresh the run-time silences from the store."""
        import json

        from nocd.incidents.config import MaintenanceMatch

        now = self._clock.now()
        async with conn.execute(
            "SELECT id, name, matcher, starts_at, ends_at, created_by, comment, public "
            "FROM silences WHERE expired_at IS NULL AND ends_at > ?",
            (now,),
        ) as cur:
            rows = await cur.fetchall()
        self.silences = [
            maintenance.Silence(
                r[0],
                r[1],
                MaintenanceMatch.model_validate(json.loads(r[2])),
                r[3],
                r[4],
                r[5],
                r[6],
                bool(r[7]),
            )
            for r in rows
        ]

    # ---- the batch handler --------------------------------------------------------------

    async def handle(self, conn: object, changes: Sequence[Change], now: float) -> None:
        """Pipeline batch handler: reconcile every group the changes touch."""
        assert isinstance(conn, aiosqlite.Connection)
        self._guard()
        groups: dict[str, None] = {}
        for ch in changes:
            for name in self._affected(ch.check.name):
                g = self._group_of.get(name)
                if g is not None:
                    groups[g] = None
        try:
            for g in groups:
                await self._reconcile(conn, g, now)
                if g in self._suppressed:  # e.g. flapping just stopped
                    await self._lift(conn, g, now)
            await self.refresh_gauges(conn)
        except BaseException:
            # The transaction rolls back: forget in-memory changes; the pipeline retries.
            await self.load(conn)
            raise

    def _guard(self) -> None:
        """Restore the open-group maps if the caller's transaction does not commit."""
        if self.store is None:
            return
        snap = (
            dict(self._open),
            dict(self._clear_since),
            set(self._held_flapping),
            dict(self._suppressed),
        )

        def undo() -> None:
            self._open, self._clear_since, self._held_flapping, self._suppressed = (
                dict(snap[0]),
                dict(snap[1]),
                set(snap[2]),
                dict(snap[3]),
            )

        self.store.on_rollback(undo)

    def _affected(self, name: str) -> list[str]:
        """The check and everything that depends on it (their reachability changed)."""
        out, frontier, seen = [name], [name], {name}
        while frontier:
            for child in self._children.get(frontier.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    frontier.append(child)
        return out

    async def tick(self, conn: aiosqlite.Connection) -> None:
        """Periodic work: resolves whose hold-down has elapsed, suppressions that ended."""
        now = self._clock.now()
        hold = self.config.incidents.resolve_hold_down
        self._guard()
        for g, since in list(self._clear_since.items()):
            if now - since >= hold:
                await self._reconcile(conn, g, now)
        # A maintenance window or silence that ended (or was expired) while its outage is
        # still failing: ticket and page it now, else it is never paged at all.
        for g in list(self._suppressed):
            await self._lift(conn, g, now)

    async def _lift(self, conn: aiosqlite.Connection, g: str, now: float) -> None:
        """Ticket and page a suppressed open incident whose failing members are no longer covered.

        Idempotent and crash-safe: the row's `suppressed` goes NULL in the same transaction as
        the listeners' outbox rows, and only a row still suppressed is lifted. An incident that
        recovers while suppressed is not lifted: it resolves silently, as before.
        """
        inc_id = self._open.get(g)
        if inc_id is None:
            self._suppressed.pop(g, None)
            return
        # Cheap first (every second for every suppressed group): all failing checks still
        # covered or flapping means the reachable ones are too, no need to build the members.
        states = self._pipeline.states
        down = [
            c
            for c in self._groups.get(g, ())
            if (st := states.get(c.name)) is not None and st.hard is not Severity.OK
        ]
        if not down or all(states[c.name].flapping for c in down):
            return
        # What `maintenance.covering` checks, with the time tests done once, not per check.
        active = [w.match for w in self.config.maintenance if maintenance.window_active(w, now)]
        active += [s.match for s in self.silences if s.starts_at <= now < s.ends_at]
        if active and all(
            any(maintenance.matches(m, c, self.config) for m in active) for c in down
        ):
            return
        reachable = [m for m in self._members(g) if m.severity is not Severity.OK]
        reachable = [m for m in reachable if not m.unreachable]
        if not reachable or self._suppression(reachable, now) is not None:
            return
        incident = await load(conn, inc_id)
        if (
            incident is None
            or incident.state is IncidentState.RESOLVED
            or incident.suppressed is None
        ):
            self._suppressed.pop(g, None)
            return
        was = incident.suppressed
        cur = await conn.execute(
            "UPDATE incidents SET suppressed=NULL WHERE id=? AND suppressed IS NOT NULL",
            (inc_id,),
        )
        if cur.rowcount != 1:
            return
        self._suppressed.pop(g, None)
        kind, _, name = was.partition(":")
        why = "flapping stopped" if was == "flapping" else f"{kind} {name} ended"
        # Acknowledged while suppressed: someone is on it already, a ticket but no page.
        acked = incident.state is IncidentState.ACKNOWLEDGED
        now_what = "ticketing (acknowledged: no page)" if acked else "ticketing and paging now"
        text = f"suppression ended ({why}), still failing: {now_what}"
        await add_event(conn, inc_id, now, "unsuppressed", text, {"was": was})
        self._metrics.unsuppressed.labels(kind).inc()
        log.warning("suppression ended, still failing", incident=incident.code, group=g, was=was)
        memory = self.paged_from_memory(g) if self.paged_from_memory is not None else None
        if memory is not None and memory.code != incident.code:
            # Paged from memory while the store refused writes: the incident takes the code
            # those pages told people to type (as when an incident opens).
            code = await self._new_code(conn, memory.code)
            if code == memory.code:
                await conn.execute("UPDATE incidents SET code=? WHERE id=?", (code, inc_id))
        await self._notify(
            conn,
            inc_id,
            IncidentEvent(IncidentEventKind.OPENED, now, text=f"{incident.title} ({why})"),
            g,
            now,
            pages=not acked,
        )
        if memory is not None and memory.acked is not None:
            by, via, _at = memory.acked
            lifted = await load(conn, inc_id)
            if lifted is not None:
                await self.acknowledge(conn, lifted, now, by, f"{via} (taken in memory)")

    def _members(self, g: str) -> list[MemberView]:
        states = self._pipeline.states
        down = {n: not s.up for n, s in states.items()}
        out = []
        for c in self._groups.get(g, ()):
            st = states.get(c.name)
            sev = st.hard if st is not None else Severity.OK
            unreachable = sev is not Severity.OK and bool(failing_parents(c, down, self._parents))
            res = self._pipeline.results.get(c.name)
            expected = missing = None
            if res is not None and "expected" in res.observation.values:
                expected = int(res.observation.values["expected"])
                missing = expected - int(res.observation.values.get("registered", expected))
            out.append(MemberView(c, sev, unreachable, expected, missing))
        return out

    def _cause(self, members: Sequence[MemberView]) -> CheckConfig | None:
        """A failing member that others in the group (or elsewhere) depend on."""
        down = {n: not s.up for n, s in self._pipeline.states.items()}
        for m in members:
            if m.severity is not Severity.OK and not m.unreachable:
                if any(down.get(ch, False) for ch in self._children.get(m.check.name, ())):
                    return m.check
        return None

    async def _reconcile(self, conn: aiosqlite.Connection, g: str, now: float) -> None:
        members = self._members(g)
        failing = [m for m in members if m.severity is not Severity.OK]
        reachable = [m for m in failing if not m.unreachable]
        flapping = any(
            (st := self._pipeline.states.get(m.check.name)) is not None and st.flapping
            for m in members
        )
        severity, cause = self._severity(members)
        inc_id = self._open.get(g)
        if inc_id is None:
            if reachable:
                await self._open_incident(conn, g, members, reachable, severity, cause, now)
            return
        incident = await load(conn, inc_id)
        if incident is None or incident.state is IncidentState.RESOLVED:
            self._open.pop(g, None)
            self._suppressed.pop(g, None)
            return
        if not failing:
            if flapping:
                if g not in self._held_flapping:
                    self._held_flapping.add(g)
                    await add_event(
                        conn,
                        inc_id,
                        now,
                        "flapping",
                        "all members up, but flapping: incident held open",
                    )
                return
            hold = self.config.incidents.resolve_hold_down
            since = self._clear_since.setdefault(g, now)
            if now - since < hold:
                return
            await self.resolve_incident(
                conn, incident, now, "nocd", "monitor", "all checks recovered"
            )
            return
        self._clear_since.pop(g, None)
        self._held_flapping.discard(g)
        changed = await self._write_members(conn, inc_id, members, now)
        if cause is not None and incident.cause != cause.name:
            await conn.execute("UPDATE incidents SET cause=? WHERE id=?", (cause.name, inc_id))
            await add_event(
                conn, inc_id, now, "cause", f"cause: {cause.name} is down", {"cause": cause.name}
            )
        if reachable and severity not in (Severity.OK, incident.severity):
            await conn.execute(
                "UPDATE incidents SET severity=? WHERE id=?", (severity.value, inc_id)
            )
            direction = "rose" if severity.rank > incident.severity.rank else "fell"
            text = f"severity {direction} from {incident.severity.value} to {severity.value}"
            await add_event(
                conn,
                inc_id,
                now,
                "severity",
                text,
                {"from": incident.severity.value, "to": severity.value},
            )
            await self._notify(
                conn,
                inc_id,
                IncidentEvent(
                    IncidentEventKind.SEVERITY, now, text=text, previous=incident.severity
                ),
                g,
                now,
            )
        elif changed:
            await self._notify(
                conn, inc_id, IncidentEvent(IncidentEventKind.MEMBERS, now, text=changed), g, now
            )

    # ---- writing --------------------------------------------------------------------------

    async def _open_incident(
        self,
        conn: aiosqlite.Connection,
        g: str,
        members: Sequence[MemberView],
        reachable: Sequence[MemberView],
        severity: Severity,
        cause: CheckConfig | None,
        now: float,
    ) -> None:
        first = reachable[0].check
        site = first.site
        customer = self.config.sites[site].customer if site in self.config.sites else None
        suppressed = self._suppression(reachable, now)
        title = self._title(reachable, members, cause, site)
        memory = self.paged_from_memory(g) if self.paged_from_memory is not None else None
        code = await self._new_code(conn, memory.code if memory is not None else None)
        cur = await conn.execute(
            "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
            "cause, opened_at, suppressed) VALUES (?, ?, ?, ?, ?, 'triggered', ?, ?, ?, ?)",
            (
                code,
                g,
                site,
                customer,
                severity.value,
                title,
                cause.name if cause else None,
                now,
                suppressed,
            ),
        )
        inc_id = int(cur.lastrowid or 0)
        self._open[g] = inc_id
        self._clear_since.pop(g, None)
        await self._write_members(conn, inc_id, members, now)
        reasons = "; ".join(
            f"{m.check.name}: {self._pipeline.states[m.check.name].reason}" for m in reachable[:5]
        )
        await add_event(
            conn,
            inc_id,
            now,
            "opened",
            f"{severity.value} incident opened: {title}",
            {
                "severity": severity.value,
                "reasons": reasons,
                "cause": cause.name if cause else None,
            },
        )
        self._metrics.incidents_opened.labels(severity.value).inc()
        log.warning(
            "incident opened",
            incident=code,
            group=g,
            severity=severity.value,
            site=site,
            title=title,
        )
        if suppressed is not None:
            self._suppressed[g] = suppressed
            kind = suppressed.split(":", 1)[0]
            self._metrics.suppressed.labels(kind).inc()
            await add_event(
                conn,
                inc_id,
                now,
                "suppressed",
                f"no ticket or page: {suppressed}",
                {"by": suppressed},
            )
            return
        await self._notify(
            conn, inc_id, IncidentEvent(IncidentEventKind.OPENED, now, text=title), g, now
        )
        if memory is not None and memory.acked is not None:
            # Acknowledged by phone while the store could not write: the ack stands.
            by, via, _at = memory.acked
            opened = await load(conn, inc_id)
            if opened is not None:
                await self.acknowledge(conn, opened, now, by, f"{via} (taken in memory)")

    def _severity(self, members: Sequence[MemberView]) -> tuple[Severity, CheckConfig | None]:
        """A group's severity under the aggregate rules, and its cause (if one is found)."""
        severity = aggregate_severity(self.config.incidents.rules, members)
        cause = self._cause(members)
        if cause is not None and cause.labels.get("role") == "uplink":
            # SLAs exclude customer LAN/ISP faults: an uplink outage is not the platform's P1.
            severity = self.config.incidents.uplink_severity
        return severity, cause

    def _suppression(self, reachable: Sequence[MemberView], now: float) -> str | None:
        """The maintenance/silence covering every failing member, or "flapping", or None."""
        covered = [
            maintenance.covering(m.check, self.config, self.silences, now) for m in reachable
        ]
        suppressed = covered[0] if covered and all(covered) else None
        all_flapping = all(
            (st := self._pipeline.states.get(m.check.name)) is not None and st.flapping
            for m in reachable
        )
        if suppressed is None and all_flapping:
            suppressed = "flapping"
        return suppressed

    def failing(self, group: str) -> bool:
        """Whether any check of `group` is hard-failing (in memory)."""
        states = self._pipeline.states
        return any(
            (st := states.get(c.name)) is not None and st.hard is not Severity.OK
            for c in self._groups.get(group, ())
        )

    def unrecorded(self, now: float) -> list[Unrecorded]:
        """Outages in memory with no open incident: what the next flush would open.

        Also a suppressed open incident whose suppression has ended: the next flush or tick
        would lift it (ticket and page), which the store may be refusing to write.
        The memory pager uses it while the store refuses writes; the same grouping,
        severity, maintenance and silence rules apply as when the incident is written.
        """
        groups: dict[str, None] = {}
        for name, st in self._pipeline.states.items():
            if st.hard is not Severity.OK:
                g = self._group_of.get(name)
                if g is not None and (g not in self._open or g in self._suppressed):
                    groups[g] = None
        out = []
        for g in groups:
            members = self._members(g)
            reachable = [m for m in members if m.severity is not Severity.OK and not m.unreachable]
            if not reachable:
                continue
            if g in self._open and self._suppression(reachable, now) is not None:
                continue  # still suppressed: its incident exists and stays silent
            severity, cause = self._severity(members)
            site = reachable[0].check.site
            customer = self.config.sites[site].customer if site in self.config.sites else None
            out.append(
                Unrecorded(
                    g,
                    site,
                    customer,
                    severity,
                    self._title(reachable, members, cause, site),
                    self._suppression(reachable, now),
                    tuple(m.check.name for m in reachable),
                )
            )
        return out

    def _title(
        self,
        reachable: Sequence[MemberView],
        members: Sequence[MemberView],
        cause: CheckConfig | None,
        site: str | None,
    ) -> str:
        where = ""
        if site:
            s = self.config.sites.get(site)
            where = f" at {s.name if s and s.name else site}"
        if cause is not None:
            n = sum(1 for m in members if m.unreachable)
            return f"{cause.name} down{where}" + (
                f" ({n} dependent checks unreachable)" if n else ""
            )
        if len(reachable) == 1:
            return f"{reachable[0].check.name} down{where}"
        return f"{len(reachable)} checks failing{where}"

    async def _new_code(self, conn: aiosqlite.Connection, wanted: str | None = None) -> str:
        if wanted is not None:
            # The code already sent in pages from memory, unless an incident took it since.
            async with conn.execute("SELECT 1 FROM incidents WHERE code=?", (wanted,)) as cur:
                if await cur.fetchone() is None:
                    return wanted
        for length in (3, 3, 3, 4, 4, 5, 6):
            code = random_code(length)
            async with conn.execute("SELECT 1 FROM incidents WHERE code=?", (code,)) as cur:
                if await cur.fetchone() is None:
                    return code
        raise RuntimeError("could not find a free incident code")

    async def _write_members(
        self, conn: aiosqlite.Connection, inc_id: int, members: Sequence[MemberView], now: float
    ) -> str:
        """Upsert failing members, mark recovered ones; returns a summary of what changed."""
        async with conn.execute(
            "SELECT check_name, severity, recovered_at FROM incident_members WHERE incident_id=?",
            (inc_id,),
        ) as cur:
            known = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
        states = self._pipeline.states
        upserts, recovered = [], []
        for m in members:
            name = m.check.name
            prev = known.get(name)
            if m.severity is not Severity.OK:
                sev = "unknown" if m.unreachable else m.severity.value
                if prev is None or prev[0] != sev or prev[1] is not None:
                    st = states[name]
                    reason = ("unreachable: " if m.unreachable else "") + st.reason
                    upserts.append((inc_id, name, sev, st.failure, reason, st.since or now))
            elif prev is not None and prev[1] is None:
                recovered.append((now, inc_id, name))
        if upserts:
            await conn.executemany(
                "INSERT INTO incident_members (incident_id, check_name, severity, failure, "
                "reason, since) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(incident_id, check_name) "
                "DO UPDATE SET severity=excluded.severity, failure=excluded.failure, "
                "reason=excluded.reason, recovered_at=NULL",
                upserts,
            )
        if recovered:
            await conn.executemany(
                "UPDATE incident_members SET recovered_at=? WHERE incident_id=? AND check_name=?",
                recovered,
            )
        parts = []
        if upserts:
            parts.append(f"{len(upserts)} failing/changed")
        if recovered:
            parts.append(f"{len(recovered)} recovered")
        if parts and known:  # the first write at open time is not a "change"
            await add_event(
                conn,
                inc_id,
                now,
                "members",
                "members: " + ", ".join(parts),
                {
                    "failing": [u[1] for u in upserts[:50]],
                    "recovered": [r[2] for r in recovered[:50]],
                },
            )
        return ", ".join(parts) if known else ""

    async def _notify(
        self,
        conn: aiosqlite.Connection,
        inc_id: int,
        event: IncidentEvent,
        g: str | None,
        now: float,
        pages: bool = True,
    ) -> None:
        incident = await load(conn, inc_id)
        if incident is None or incident.suppressed is not None:
            # Nothing was sent for a suppressed incident, so nothing follows it, until
            # `_lift` tells them all when the suppression ends while it is still failing.
            return
        muted = None
        if event.kind in (IncidentEventKind.SEVERITY, IncidentEventKind.MEMBERS) and g:
            checks = [c for c in self._groups.get(g, ())]
            muted = next(
                (
                    w
                    for c in checks
                    if (w := maintenance.covering(c, self.config, self.silences, now))
                ),
                None,
            )
        for sub in self.subscribers:
            if sub.pages and not pages:
                continue
            if muted and sub.pages:
                self._metrics.suppressed.labels(muted.split(":", 1)[0]).inc()
                await add_event(
                    conn,
                    inc_id,
                    now,
                    "suppressed",
                    f"{event.kind.value} not paged: {muted}",
                    {"by": muted},
                )
                continue
            await self._call(conn, sub.listener, incident, event)

    async def _call(
        self,
        conn: aiosqlite.Connection,
        listener: IncidentListener,
        incident: Incident,
        event: IncidentEvent,
    ) -> None:
        # A savepoint per listener: one listener's bug must not cost the incident or the others.
        await conn.execute("SAVEPOINT listener")
        try:
            await listener.on_incident(conn, incident, event)
        except Exception as exc:  # noqa: BLE001 - one listener's bug must not cost the incident or the others
            await conn.execute("ROLLBACK TO listener")
            log.error(
                "incident listener failed",
                listener=type(listener).__name__,
                incident=incident.code,
                error=repr(exc),
            )
            await add_event(
                conn,
                incident.id,
                event.at,
                "error",
                f"{type(listener).__name__} failed: {type(exc).__name__}",
            )
        finally:
            await conn.execute("RELEASE listener")

    # ---- lifecycle actions (also used by API, CLI, dashboard, Twilio webhooks) --------------

    async def resolve_incident(
        self,
        conn: aiosqlite.Connection,
        incident: Incident,
        now: float,
        by: str,
        via: str,
        text: str = "",
    ) -> None:
        """Resolve an open incident (all-clear or operator) and tell the listeners."""
        await conn.execute(
            "UPDATE incidents SET state='resolved', resolved_at=?, resolved_by=? WHERE id=?",
            (now, by, incident.id),
        )
        await conn.execute(
            "UPDATE incident_members SET recovered_at=? WHERE incident_id=? AND recovered_at IS NULL",
            (now, incident.id),
        )
        msg = text or f"resolved by {by} via {via}"
        await add_event(conn, incident.id, now, "resolved", msg, {"by": by, "via": via})
        self._guard()
        self._open.pop(incident.group_key, None)
        self._clear_since.pop(incident.group_key, None)
        self._held_flapping.discard(incident.group_key)
        self._suppressed.pop(incident.group_key, None)
        log.info("incident resolved", incident=incident.code, by=by, via=via)
        await self._notify(
            conn,
            incident.id,
            IncidentEvent(IncidentEventKind.RESOLVED, now, by=by, via=via, text=msg),
            None,
            now,
        )

    async def acknowledge(
        self, conn: aiosqlite.Connection, incident: Incident, now: float, by: str, via: str
    ) -> bool:
        """Acknowledge a triggered incident; False when it was not triggered (idempotent)."""
        if incident.state is not IncidentState.TRIGGERED:
            return False
        await conn.execute(
            "UPDATE incidents SET state='acknowledged', acked_at=?, acked_by=? WHERE id=?",
            (now, by, incident.id),
        )
        await add_event(
            conn, incident.id, now, "ack", f"acknowledged by {by} via {via}", {"by": by, "via": via}
        )
        log.info("incident acknowledged", incident=incident.code, by=by, via=via)
        await self._notify(
            conn,
            incident.id,
            IncidentEvent(IncidentEventKind.ACKNOWLEDGED, now, by=by, via=via),
            None,
            now,
        )
        return True

    async def add_note(
        self, conn: aiosqlite.Connection, incident: Incident, now: float, by: str, text: str
    ) -> None:
        """Append an engineer's note (root cause, remedy …) and tell the listeners."""
        await add_event(conn, incident.id, now, "note", text, {"by": by})
        await self._notify(
            conn,
            incident.id,
            IncidentEvent(IncidentEventKind.NOTE, now, by=by, via="note", text=text),
            None,
            now,
        )

    async def refresh_gauges(self, conn: aiosqlite.Connection) -> None:
        """Set nocd_incidents_open by severity from the store."""
        async with conn.execute(
            "SELECT severity, COUNT(*) FROM incidents WHERE state != 'resolved' GROUP BY severity"
        ) as cur:
            counts = {r[0]: r[1] for r in await cur.fetchall()}
        for sev in (Severity.CRITICAL, Severity.DEGRADED, Severity.LOW, Severity.UNKNOWN):
            self._metrics.incidents_open.labels(sev.value).set(counts.get(sev.value, 0))
