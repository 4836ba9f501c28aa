"""The JSON API for incidents (list, detail with timeline, ack, resolve, note), tickets and RFOs.

Actions go through `IncidentActions`, the one implementation shared with the CLI,
dashboard and Twilio: unknown incident → 404, a repeat → 200 with `changed: false`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from nocd.incidents.actions import ActionResult
from nocd.incidents.model import load
from nocd.incidents.timeline import events
from nocd.web import views
from nocd.web.params import PREFIX, bad, error, json_body, query_choice, query_int

if TYPE_CHECKING:
    from nocd.daemon import Daemon

_REF = re.compile(r"^[A-Za-z0-9]{1,12}$")  # an incident code (K7Q) or numeric id
STATES = ("open", "all", "triggered", "acknowledged", "resolved")
SEVERITIES = ("critical", "degraded", "low", "unknown")
TICKET_STATUSES = ("open", "acknowledged", "resolved", "closed")
VIA = ("api", "cli")


def action_response(res: ActionResult) -> web.Response:
    """An action's result: 404 for an unknown incident, 400 for a refused input, else 200."""
    body = {
        "ok": res.ok,
        "changed": res.changed,
        "incident": res.code,
        "state": res.state,
        "message": res.message,
    }
    if not res.ok:
        # Every error answer carries "error", like the rest of the API.
        body["error"] = res.message
        return web.json_response(body, status=404 if res.message.startswith("no incident") else 400)
    return web.json_response(body)


def routes(daemon: Daemon, auth: Callable[[web.Request, str], str]) -> list[web.RouteDef]:
    """Incident, ticket and RFO routes."""

    def ref_of(request: web.Request) -> str:
        ref = request.match_info["ref"]
        if not _REF.match(ref):
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no incident {ref!r}"}), content_type="application/json"
            )
        return ref

    async def via_of(request: web.Request) -> str:
        body = await json_body(request, required=False)
        via = body.get("via", "api")
        if via not in VIA:
            raise bad(f"via must be one of {', '.join(VIA)}")
        return str(via)

    async def list_incidents(request: web.Request) -> web.Response:
        auth(request, "read")
        assert daemon.store is not None
        state = query_choice(request, "state", STATES, "open")
        sev = request.query.get("severity")
        if sev is not None and sev not in SEVERITIES:
            raise bad(f"severity must be one of {', '.join(SEVERITIES)}")
        limit = query_int(request, "limit", 100, 1, 1000)
        found = await views.find_incidents(
            daemon.store.reader, state, sev, request.query.get("site"), limit
        )
        return web.json_response({"incidents": [views.incident_view(i) for i in found]})

    async def incident(request: web.Request) -> web.Response:
        auth(request, "read")
        assert daemon.store is not None
        ref = ref_of(request)
        inc = await load(daemon.store.reader, ref)
        if inc is None:
            return error(404, f"no incident {ref}")
        out = views.incident_view(inc)
        out["timeline"] = [views.event_view(e) for e in await events(daemon.store.reader, inc.id)]
        return web.json_response(out)

    async def ack(request: web.Request) -> web.Response:
        by = auth(request, "write")
        assert daemon.actions is not None
        ref = ref_of(request)
        return action_response(await daemon.actions.ack(ref, by, await via_of(request)))

    async def resolve(request: web.Request) -> web.Response:
        by = auth(request, "write")
        assert daemon.actions is not None
        ref = ref_of(request)
        return action_response(await daemon.actions.resolve(ref, by, await via_of(request)))

    async def note(request: web.Request) -> web.Response:
        by = auth(request, "write")
        assert daemon.actions is not None
        ref = ref_of(request)
        body = await json_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad("text (a non-empty string) is required")
        if len(text) > 4000:
            raise bad("a note is at most 4000 characters")
        return action_response(await daemon.actions.note(ref, by, text))

    async def rfo(request: web.Request) -> web.Response:
        auth(request, "read")
        assert daemon.store is not None
        ref = ref_of(request)
        fmt: Literal["markdown", "html"] = (
            "html"
            if query_choice(request, "format", ("markdown", "html"), "markdown") == "html"
            else "markdown"
        )
        try:
            from nocd.tickets import rfo as rfo_mod
        except ImportError:
            return error(501, "RFO reports are not available in this build (no tickets module)")
        inc = await load(daemon.store.reader, ref)
        if inc is None:
            return error(404, f"no incident {ref}")
        text = rfo_mod.render(inc, await events(daemon.store.reader, inc.id), daemon.config, fmt)
        ctype = "text/html" if fmt == "html" else "text/markdown"
        return web.Response(text=text, content_type=ctype, charset="utf-8")

    async def tickets(request: web.Request) -> web.Response:
        auth(request, "read")
        assert daemon.store is not None
        status = request.query.get("status")
        if status is not None and status not in TICKET_STATUSES:
            raise bad(f"status must be one of {', '.join(TICKET_STATUSES)}")
        limit = query_int(request, "limit", 100, 1, 1000)
        try:
            from nocd.tickets import store as tstore
        except ImportError:
            return error(501, "tickets are not available in this build (no tickets module)")
        conn = daemon.store.reader
        rows = await tstore.listing(conn, tstore.TicketStatus(status) if status else None, limit)
        codes: dict[int, str] = {}
        if rows:
            marks = ",".join("?" * len(rows))
            async with conn.execute(
                f"SELECT id, code FROM incidents WHERE id IN ({marks})",
                [t.incident_id for t in rows],
            ) as cur:
                codes = {r[0]: r[1] for r in await cur.fetchall()}
        return web.json_response({"tickets": [ticket_view(t, codes) for t in rows]})

    p = PREFIX
    return [
        web.get(f"{p}/incidents", list_incidents),
        web.get(f"{p}/incidents/{{ref}}", incident),
        web.post(f"{p}/incidents/{{ref}}/ack", ack),
        web.post(f"{p}/incidents/{{ref}}/resolve", resolve),
        web.post(f"{p}/incidents/{{ref}}/notes", note),
        web.get(f"{p}/incidents/{{ref}}/rfo", rfo),
        web.get(f"{p}/tickets", tickets),
    ]


def ticket_view(t: Any, codes: dict[int, str]) -> dict[str, Any]:
    """One ticket as the API shows it."""
    ts = views.ts
    return {
        "id": t.id,
        "incident": codes.get(t.incident_id),
        "incident_id": t.incident_id,
        "status": str(t.status),
        "priority": t.priority,
        "worst_priority": t.worst_priority,
        "title": t.title,
        "plan": t.plan,
        "facts": dict(t.facts),
        "opened_at": ts(t.opened_at),
        "response_due": ts(t.response_due),
        "resolve_due": ts(t.resolve_due),
        "responded_at": ts(t.responded_at),
        "resolved_at": ts(t.resolved_at),
        "closed_at": ts(t.closed_at),
        "rfo_due": ts(t.rfo_due),
        "rfo_delivered_at": ts(t.rfo_delivered_at),
    }
