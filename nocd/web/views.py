"""The read model shared by the API, the dashboard and the status page: plain JSON-able dicts.

Nothing here serializes config objects wholesale: every field is picked by name, so a
secret (a SecretStr in a check's or provider's config) cannot leak into a view.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

from checks.base import CheckConfig
from nocd.clock import iso
from nocd.incidents import maintenance
from nocd.incidents.config import MaintenanceWindow
from nocd.incidents.model import Incident, load
from nocd.incidents.silences import StoredSilence
from nocd.incidents.timeline import TimelineEvent
from nocd.model import Severity, worst
from nocd.pipeline import Result
from nocd.state import CheckState

if TYPE_CHECKING:
    from nocd.daemon import Daemon


def ts(value: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC, None stays None."""
    return iso(value) if value is not None else None


def redact_target(target: str | None) -> str | None:
    """A check target without URL credentials (`https://user:pw@host` → `https://host`)."""
    if not target or "@" not in target or "://" not in target:
        return target
    parts = urlsplit(target)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def status_of(state: CheckState | None) -> str:
    """ok, pending (soft-failing, not yet confirmed), or the hard severity."""
    if state is None:
        return "pending"  # never judged yet since start-up
    if state.hard is not Severity.OK:
        return state.hard.value
    return "soft_failing" if state.failures > 0 else "ok"


def colour(severities: Iterable[Severity]) -> str:
    """Traffic-light of a set of hard severities: green, amber or red."""
    w = worst(*severities)
    if w is Severity.CRITICAL:
        return "red"
    return "green" if w is Severity.OK else "amber"


def check_view(cfg: CheckConfig, state: CheckState | None, result: Result | None) -> dict[str, Any]:
    """One check with its state and last observation."""
    out: dict[str, Any] = {
        "name": cfg.name,
        "type": cfg.type,
        "target": redact_target(cfg.target),
        "site": cfg.site,
        "device": cfg.device,
        "interval_s": cfg.interval,
        "labels": dict(cfg.labels),
        "enabled": cfg.enabled,
        "status": status_of(state),
        "state": None,
        "last": None,
    }
    if state is not None:
        out["state"] = {
            "hard": state.hard.value,
            "last": state.last.value,
            "up": state.up,
            "since": ts(state.since) if state.since else None,
            "failures": state.failures,
            "flapping": state.flapping,
            "failure": state.failure,
            "reason": state.reason,
        }
    if result is not None:
        obs, verdict = result.observation, result.verdict
        out["last"] = {
            "at": ts(result.at),
            "ok": obs.ok,
            "failure": obs.failure.value,
            "detail": obs.detail,
            "duration_s": round(obs.duration_s, 6),
            "values": {k: _plain(v) for k, v in obs.values.items()},
            "severity": verdict.severity.value,
            "reason": verdict.reason,
        }
    return out


def _plain(v: Any) -> Any:
    """Observation values as JSON: scalars and lists of scalars; anything else as text."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else None
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v[:100]]
    return str(v)


def state_of(daemon: Daemon, name: str) -> CheckState | None:
    """A check's state; a check judged but never failing has no stored state: it is OK."""
    p = daemon.pipeline
    if p is None:
        return None
    st = p.states.get(name)
    if st is None and name in p.results:
        return CheckState()
    return st


def checks(daemon: Daemon) -> list[dict[str, Any]]:
    """Every configured check with its state, in config order."""
    results = daemon.pipeline.results if daemon.pipeline else {}
    return [
        check_view(c, state_of(daemon, c.name), results.get(c.name)) for c in daemon.config.checks
    ]


def phones(results: Iterable[Result | None]) -> dict[str, int] | None:
    """Registered/expected phones summed over registration checks, None when there are none."""
    expected = registered = 0
    seen = False
    for r in results:
        if r is None or "expected" not in r.observation.values:
            continue
        seen = True
        vals = r.observation.values
        expected += int(vals["expected"])
        registered += int(vals.get("registered", vals["expected"]))
    return {"registered": registered, "expected": expected} if seen else None


def incident_brief(inc: Incident) -> dict[str, Any]:
    """The few fields a site tile or a list row needs."""
    return {
        "id": inc.id,
        "code": inc.code,
        "severity": inc.severity.value,
        "state": inc.state.value,
        "title": inc.title,
        "opened_at": ts(inc.opened_at),
    }


def sites(daemon: Daemon, open_incidents: Sequence[Incident]) -> list[dict[str, Any]]:
    """Every configured site: traffic light, checks, phones and open incidents."""
    cfg = daemon.config
    results = daemon.pipeline.results if daemon.pipeline else {}
    states = {c.name: st for c in cfg.checks if (st := state_of(daemon, c.name)) is not None}
    by_site: dict[str, list[CheckConfig]] = {k: [] for k in cfg.sites}
    for c in cfg.checks:
        if c.site in by_site:
            by_site[c.site].append(c)
    out = []
    for key, site in cfg.sites.items():
        members = by_site[key]
        hard = [st.hard for c in members if (st := states.get(c.name)) is not None]
        out.append(
            {
                "key": key,
                "name": site.name or key,
                "customer": site.customer,
                "timezone": site.timezone,
                "colour": colour(hard),
                "status": worst(*hard).value,
                "checks": [
                    {"name": c.name, "type": c.type, "status": status_of(states.get(c.name))}
                    for c in members
                ],
                "phones": phones(results.get(c.name) for c in members),
                "incidents": [incident_brief(i) for i in open_incidents if i.site == key],
            }
        )
    return out


def incident_view(inc: Incident) -> dict[str, Any]:
    """An incident with its members."""
    return {
        **incident_brief(inc),
        "group": inc.group_key,
        "site": inc.site,
        "customer": inc.customer,
        "cause": inc.cause,
        "acked_at": ts(inc.acked_at),
        "acked_by": inc.acked_by,
        "resolved_at": ts(inc.resolved_at),
        "resolved_by": inc.resolved_by,
        "suppressed": inc.suppressed,
        "members": [
            {
                "check": m.check,
                "severity": m.severity.value,
                "failure": m.failure,
                "reason": m.reason,
                "since": ts(m.since),
                "recovered_at": ts(m.recovered_at),
            }
            for m in inc.members
        ],
    }


def event_view(ev: TimelineEvent) -> dict[str, Any]:
    """One timeline event."""
    return {"id": ev.id, "at": ts(ev.at), "kind": ev.kind, "text": ev.text, "data": ev.data}


async def timeline_tail(
    conn: aiosqlite.Connection, incident_id: int, n: int
) -> list[dict[str, Any]]:
    """The last `n` timeline events of an incident, oldest first (without reading them all)."""
    async with conn.execute(
        "SELECT id, incident_id, at, kind, text, data FROM timeline WHERE incident_id=? "
        "ORDER BY at DESC, id DESC LIMIT ?",
        (incident_id, n),
    ) as cur:
        rows = await cur.fetchall()
    return [
        event_view(TimelineEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])))
        for r in list(rows)[::-1]
    ]


async def find_incidents(
    conn: aiosqlite.Connection,
    state: str = "open",
    severity: str | None = None,
    site: str | None = None,
    limit: int = 100,
) -> list[Incident]:
    """Incidents newest first; `state` is open (not resolved), all, or one lifecycle state."""
    where, args = [], []
    if state == "open":
        where.append("state != 'resolved'")
    elif state != "all":
        where.append("state = ?")
        args.append(state)
    if severity:
        where.append("severity = ?")
        args.append(severity)
    if site:
        where.append("site = ?")
        args.append(site)
    sql = "SELECT id FROM incidents" + (" WHERE " + " AND ".join(where) if where else "")
    async with conn.execute(sql + " ORDER BY opened_at DESC, id DESC LIMIT ?", (*args, limit)) as c:
        ids = [r[0] for r in await c.fetchall()]
    out = []
    for i in ids:
        inc = await load(conn, i)
        if inc is not None:
            out.append(inc)
    return out


def counts(incidents: Iterable[Incident]) -> Mapping[str, int]:
    """Open incidents by severity."""
    out = {s.value: 0 for s in (Severity.CRITICAL, Severity.DEGRADED, Severity.LOW)}
    for i in incidents:
        out[i.severity.value] = out.get(i.severity.value, 0) + 1
    return out


def window_view(w: MaintenanceWindow, now: float) -> dict[str, Any]:
    """A configured maintenance window (read-only: it lives in the config file)."""
    return {
        "kind": "window",
        "name": w.name,
        "match": w.match.model_dump(mode="json"),
        "starts_at": ts(w.start.timestamp()) if w.start else None,
        "ends_at": ts(w.end.timestamp()) if w.end else None,
        "recurring": w.recurring.model_dump(mode="json") if w.recurring else None,
        "active": maintenance.window_active(w, now),
        "public": w.public,
        "comment": w.comment,
    }


def silence_view(s: StoredSilence, now: float) -> dict[str, Any]:
    """A run-time silence."""
    return {
        "kind": "silence",
        "id": s.id,
        "name": s.name,
        "match": s.match.model_dump(mode="json"),
        "starts_at": ts(s.starts_at),
        "ends_at": ts(s.ends_at),
        "created_by": s.created_by,
        "comment": s.comment,
        "public": s.public,
        "state": s.state(now),
        "active": s.active(now),
        "expired_at": ts(s.expired_at),
    }


def oncall(daemon: Daemon, at: datetime) -> list[dict[str, Any]] | None:
    """Who is on call in each schedule at `at` and until when; None without the paging module."""
    try:
        from paging.oncall import describe
    except ImportError:
        return None
    ical = daemon.pager.ical if daemon.pager is not None else None
    return [
        {
            "schedule": o.schedule,
            "person": o.person,
            "name": o.name,
            "until": o.until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if o.until else None,
        }
        for o in describe(daemon.config.paging, at, ical)
    ]
