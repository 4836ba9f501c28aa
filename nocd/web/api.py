"""The JSON API under /api/v1: checks, sites, status, maintenance, silences and on-call.

Incidents, tickets and RFOs are in `api_incidents`. Every handler authorizes first (read
or write scope), so a refused request changes nothing; errors are JSON `{"error": …}`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from pydantic import ValidationError

from nocd import __version__
from nocd.incidents import silences
from nocd.web import api_incidents, views
from nocd.web.openapi import document as openapi_document
from nocd.web.params import PREFIX, error, json_body, query_choice, validation_message

if TYPE_CHECKING:
    from nocd.daemon import Daemon

log = structlog.get_logger(__name__)

_ID = re.compile(r"^[0-9]{1,12}$")


class Api:
    """Handlers bound to one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def auth(self, request: web.Request, scope: str) -> str:
        """Authorize the request; returns the principal's name."""
        return self.d.auth.authorize(request, scope).name

    async def status(self, request: web.Request) -> web.Response:
        """Overall state: readiness, check counts, open incidents; `ok` false when critical."""
        self.auth(request, "read")
        d = self.d
        assert d.store is not None
        incidents = await views.find_incidents(d.store.reader, "open", limit=10_000)
        states = d.pipeline.states if d.pipeline else {}
        names = [c.name for c in d.config.checks]
        failing = [n for n in names if (st := states.get(n)) is not None and not st.up]
        ready = d.readiness()
        by_sev = views.counts(incidents)
        return web.json_response(
            {
                "version": __version__,
                "ready": all(ready.values()),
                "conditions": ready,
                "checks": {"total": len(names), "failing": len(failing), "failing_names": failing},
                "incidents": {
                    "open": len(incidents),
                    "unacknowledged": sum(1 for i in incidents if i.state.value == "triggered"),
                    "by_severity": by_sev,
                },
                "ok": all(ready.values()) and by_sev.get("critical", 0) == 0,
            }
        )

    async def checks(self, request: web.Request) -> web.Response:
        """Every check with its current state and last observation."""
        self.auth(request, "read")
        site = request.query.get("site")
        status = query_choice(request, "status", ("any", "ok", "failing"), "any")
        out = views.checks(self.d)
        if site:
            out = [c for c in out if c["site"] == site]
        if status == "ok":
            out = [c for c in out if c["status"] == "ok"]
        elif status == "failing":
            out = [c for c in out if c["status"] not in ("ok", "pending")]
        return web.json_response({"checks": out})

    async def check(self, request: web.Request) -> web.Response:
        """One check by name."""
        self.auth(request, "read")
        name = request.match_info["name"]
        for c in views.checks(self.d):
            if c["name"] == name:
                return web.json_response(c)
        return error(404, f"no check {name!r}")

    async def sites(self, request: web.Request) -> web.Response:
        """Sites with traffic light, checks, phones and open incidents."""
        self.auth(request, "read")
        assert self.d.store is not None
        open_ = await views.find_incidents(self.d.store.reader, "open", limit=10_000)
        return web.json_response({"sites": views.sites(self.d, open_)})

    async def site(self, request: web.Request) -> web.Response:
        """One site by key."""
        self.auth(request, "read")
        assert self.d.store is not None
        key = request.match_info["site"]
        if key not in self.d.config.sites:
            return error(404, f"no site {key!r}")
        open_ = await views.find_incidents(self.d.store.reader, "open", site=key)
        [found] = [s for s in views.sites(self.d, open_) if s["key"] == key]
        return web.json_response(found)

    async def maintenance(self, request: web.Request) -> web.Response:
        """Configured maintenance windows and run-time silences not yet over."""
        self.auth(request, "read")
        assert self.d.store is not None
        now = self.d.clock.now()
        rows = await silences.listing(self.d.store.reader, now)
        return web.json_response(
            {
                "windows": [views.window_view(w, now) for w in self.d.config.maintenance],
                "silences": [views.silence_view(s, now) for s in rows],
            }
        )

    async def list_silences(self, request: web.Request) -> web.Response:
        """Silences not yet over; `?all=true` includes expired ones."""
        self.auth(request, "read")
        assert self.d.store is not None
        include = query_choice(request, "all", ("true", "false"), "false") == "true"
        now = self.d.clock.now()
        rows = await silences.listing(self.d.store.reader, now, include_expired=include)
        return web.json_response({"silences": [views.silence_view(s, now) for s in rows]})

    async def add_silence(self, request: web.Request) -> web.Response:
        """Create a silence: no new pages or tickets for matching checks while it lasts."""
        by = self.auth(request, "write")
        body = await json_body(request)
        d = self.d
        assert d.store is not None and d.engine is not None
        try:
            req = silences.SilenceRequest.model_validate(body)
        except ValidationError as exc:
            return error(400, validation_message(exc))
        unknown = silences.unknown_references(req.match, d.config)
        if unknown:
            return error(400, "match names unknown " + ", ".join(unknown))
        now = d.clock.now()
        try:
            made = await silences.create(d.store, d.engine, req, by, now)
        except (ValueError, OverflowError) as exc:
            return error(400, str(exc))
        log.info("silence created", silence=made.id, name=made.name, by=by)
        return web.json_response(views.silence_view(made, now), status=201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        """End a silence now (idempotent: an already-over silence answers changed=false)."""
        by = self.auth(request, "write")
        d = self.d
        assert d.store is not None and d.engine is not None
        ref = request.match_info["id"]
        if not _ID.match(ref):
            return error(404, f"no silence {ref!r}")
        now = d.clock.now()
        found, changed = await silences.expire(d.store, d.engine, int(ref), now)
        if found is None:
            return error(404, f"no silence {ref}")
        if changed:
            log.info("silence expired", silence=found.id, by=by)
        return web.json_response({"changed": changed, "silence": views.silence_view(found, now)})

    async def oncall(self, request: web.Request) -> web.Response:
        """Who is on call in every schedule (now, or `?at=` ISO time) and until when."""
        self.auth(request, "read")
        text = request.query.get("at")
        if text is None or text == "now":
            at = datetime.fromtimestamp(self.d.clock.now(), UTC)
        else:
            try:
                at = datetime.fromisoformat(text)
            except ValueError:
                return error(400, "at must be an ISO-8601 time, e.g. 2026-12-01T02:00:00Z")
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
        try:
            found = views.oncall(self.d, at)
        except (ValueError, OverflowError) as exc:
            return error(400, f"cannot compute the schedule at {text}: {exc}")
        if found is None:
            return error(501, "on-call lookups are not available in this build (no paging module)")
        return web.json_response(
            {"at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "schedules": found}
        )

    async def openapi(self, _request: web.Request) -> web.Response:
        """The OpenAPI document of this API (public: it describes, it reveals nothing)."""
        return web.json_response(openapi_document())


def routes(daemon: Daemon) -> list[web.RouteDef]:
    """Every /api/v1 route."""
    a = Api(daemon)
    p = PREFIX
    return [
        web.get(f"{p}/openapi.json", a.openapi),
        web.get(f"{p}/status", a.status),
        web.get(f"{p}/checks", a.checks),
        web.get(f"{p}/checks/{{name}}", a.check),
        web.get(f"{p}/sites", a.sites),
        web.get(f"{p}/sites/{{site}}", a.site),
        web.get(f"{p}/maintenance", a.maintenance),
        web.get(f"{p}/silences", a.list_silences),
        web.post(f"{p}/silences", a.add_silence),
        web.post(f"{p}/silences/{{id}}/expire", a.expire_silence),
        web.get(f"{p}/oncall", a.oncall),
        *api_incidents.routes(daemon, a.auth),
    ]
