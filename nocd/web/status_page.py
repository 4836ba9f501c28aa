"""The public status page at `/status`: customer-facing services, maintenance, recent incidents.

No login, and no internal detail: a service is the `service` label of its checks, and only
service names, public maintenance comments and generic wording are shown — never check
names, targets, IPs, sites, customers, serials or people.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
from aiohttp import web

from checks.base import CheckConfig
from nocd.config import Config
from nocd.incidents import maintenance, silences
from nocd.incidents.config import MaintenanceMatch
from nocd.model import Severity
from nocd.web import views

if TYPE_CHECKING:
    from nocd.daemon import Daemon

SERVICE_LABEL = "service"
RECENT = 7 * 86400.0  # incidents shown: the last week
UPCOMING = 14 * 86400.0  # planned maintenance shown: the next two weeks
_WORDING = {
    "outage": "Outage",
    "degraded": "Degraded performance",
    "maintenance": "Under maintenance",
    "operational": "Operational",
}
_PHASE = {"triggered": "Investigating", "acknowledged": "Identified", "resolved": "Resolved"}


def services(config: Config) -> dict[str, list[CheckConfig]]:
    """Customer-facing services by name, from the checks' `service` label, in config order."""
    out: dict[str, list[CheckConfig]] = {}
    for c in config.checks:
        name = c.labels.get(SERVICE_LABEL)
        if name and c.enabled:
            out.setdefault(name, []).append(c)
    return out


def _affected(
    match: MaintenanceMatch, config: Config, by_service: dict[str, list[CheckConfig]]
) -> list[str]:
    return [
        s for s, cs in by_service.items() if any(maintenance.matches(match, c, config) for c in cs)
    ]


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else ""


async def context(daemon: Daemon) -> dict[str, Any]:
    """What the public page shows."""
    cfg = daemon.config
    assert daemon.store is not None
    now = daemon.clock.now()
    by_service = services(cfg)
    active_sil = list(daemon.engine.silences) if daemon.engine else []
    rows = []
    for name, checks in by_service.items():
        hard = [st.hard for c in checks if (st := views.state_of(daemon, c.name)) is not None]
        worst = max((h.rank for h in hard), default=0)
        covered = all(maintenance.covering(c, cfg, active_sil, now) for c in checks)
        if worst >= Severity.CRITICAL.rank:
            state = "outage"
        elif worst >= Severity.LOW.rank:
            state = "degraded"
        else:
            state = "operational"
        if covered and state != "operational":
            state = "maintenance"  # planned work, announced below
        rows.append({"name": name, "state": state, "text": _WORDING[state]})
    planned = []
    for w in cfg.maintenance:
        if not w.public:
            continue
        start = w.start.timestamp() if w.start else None
        end = w.end.timestamp() if w.end else None
        active = maintenance.window_active(w, now)
        upcoming = start is not None and now < start <= now + UPCOMING
        if active or upcoming:
            planned.append(
                {
                    "text": w.comment or "Planned maintenance",
                    "active": active,
                    "starts": _when(start),
                    "ends": _when(end),
                    "services": _affected(w.match, cfg, by_service),
                }
            )
    for s in await silences.listing(daemon.store.reader, now):
        if s.public and s.starts_at <= now + UPCOMING:
            planned.append(
                {
                    "text": s.comment or "Planned maintenance",
                    "active": s.active(now),
                    "starts": _when(s.starts_at),
                    "ends": _when(s.ends_at),
                    "services": _affected(s.match, cfg, by_service),
                }
            )
    return {
        "services": rows,
        "overall": _overall(r["state"] for r in rows),
        "planned": planned,
        "incidents": await _recent(daemon, by_service, now),
        "updated": _when(now),
    }


def _overall(states: Iterable[str]) -> dict[str, str]:
    found = set(states)
    if "outage" in found:
        return {"state": "outage", "text": "Major outage"}
    if "degraded" in found:
        return {"state": "degraded", "text": "Some services are degraded"}
    if "maintenance" in found:
        return {"state": "maintenance", "text": "Planned maintenance in progress"}
    return {"state": "operational", "text": "All services operational"}


async def _recent(
    daemon: Daemon, by_service: dict[str, list[CheckConfig]], now: float
) -> list[dict[str, Any]]:
    """Recent incidents touching a public service, in generic words."""
    assert daemon.store is not None
    service_of = {c.name: s for s, cs in by_service.items() for c in cs}
    out = []
    for inc in await views.find_incidents(daemon.store.reader, "all", limit=200):
        if inc.opened_at < now - RECENT:
            break
        if inc.suppressed and inc.suppressed.startswith(("maintenance:", "silence:")):
            continue  # raised inside planned work: announced as maintenance instead
        names = sorted({service_of[m.check] for m in inc.members if m.check in service_of})
        if not names:
            continue
        kind = "Outage" if inc.severity is Severity.CRITICAL else "Degraded performance"
        out.append(
            {
                "title": f"{kind}: {', '.join(names)}",
                "phase": _PHASE[inc.state.value],
                "severity": "outage" if inc.severity is Severity.CRITICAL else "degraded",
                "started": _when(inc.opened_at),
                "resolved": _when(inc.resolved_at),
            }
        )
    return out[:20]


def routes(daemon: Daemon) -> list[web.RouteDef]:
    """GET /status (HTML, public)."""

    async def page(request: web.Request) -> web.StreamResponse:
        resp = aiohttp_jinja2.render_template("status.html", request, await context(daemon))
        resp.headers["Cache-Control"] = "public, max-age=15"
        return resp

    return [web.get("/status", page)]
