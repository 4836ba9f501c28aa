"""The live dashboard at `/`: sites, open incidents with ack/resolve, on-call, maintenance.

Server-rendered with jinja2; a few lines of plain JavaScript (vendored in nocd/static)
replace the panels when the server pushes new ones over Server-Sent Events, so the view
updates without reloads and works offline. Every form carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web

from nocd.config import Config
from nocd.incidents import silences
from nocd.incidents.maintenance import window_active
from nocd.web import status_page, views
from nocd.web.session import (
    COOKIE,
    LOGIN_COOKIE,
    TTL,
    Session,
    Sessions,
    same,
    same_origin,
    set_cookie,
)

if TYPE_CHECKING:
    from nocd.daemon import Daemon

log = structlog.get_logger(__name__)

PANELS = ("summary", "sites", "incidents", "oncall", "maintenance")
PUSH_EVERY = 1.0  # seconds between checks for a changed view, per connected browser
KEEPALIVE = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
TIMELINE_TAIL = 12  # timeline events shown per incident
STREAMS_KEY = web.AppKey("nocd_streams", set)
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Dashboard:
    """Handlers bound to one daemon and its sessions."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.sessions = Sessions(daemon.clock.monotonic)
        url = daemon.config.daemon.public_url or ""
        self.secure = url.startswith("https://")
        self.public_url = url or None
        self._stop = asyncio.Event()

    # ---- sessions ---------------------------------------------------------------------

    def session(self, request: web.Request) -> Session | None:
        """The request's live session."""
        return self.sessions.get(request.cookies.get(COOKIE))

    def require(self, request: web.Request) -> Session:
        """The session, or a redirect to the login page."""
        s = self.session(request)
        if s is None:
            raise web.HTTPSeeOther("/login")
        return s

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        """GET /login: the token form with a fresh login CSRF token."""
        if self.session(request) is not None:
            raise web.HTTPSeeOther("/")
        return self._login_form(request, "", 200)

    def _login_form(self, request: web.Request, message: str, status: int) -> web.Response:
        token = request.cookies.get(LOGIN_COOKIE) or ""
        if len(token) < 20:
            token = secrets.token_urlsafe(24)
        resp = aiohttp_jinja2.render_template(
            "login.html", request, {"csrf": token, "message": message}, status=status
        )
        set_cookie(resp, LOGIN_COOKIE, token, self.secure, 3600)
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /login: an API token with the read scope opens a session."""
        form = await request.post()
        if not same(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE)):
            return self._login_form(request, "The form expired; please try again.", 403)
        if not self.from_here(request):
            return self._login_form(request, "This form was sent from another site.", 403)
        token = str(form.get("token", "")).strip()
        principal = self.d.auth.identify(f"Bearer {token}") if token else None
        if principal is None or "read" not in principal.scopes:
            log.warning("dashboard login refused", remote=request.remote)
            return self._login_form(request, "That token is not valid.", 401)
        s = self.sessions.create(principal)
        log.info("dashboard login", who=principal.name, scopes=sorted(principal.scopes))
        resp = web.HTTPSeeOther("/")
        set_cookie(resp, COOKIE, s.id, self.secure, int(TTL))
        resp.del_cookie(LOGIN_COOKIE, path="/")
        raise resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /logout."""
        s = self.require(request)
        form = await request.post()
        if not same(str(form.get("csrf", "")), s.csrf) or not self.from_here(request):
            raise web.HTTPForbidden(text="CSRF token missing or wrong")
        self.sessions.drop(s.id)
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    def from_here(self, request: web.Request) -> bool:
        """The request's Origin, if any, is ours (see `same_origin`); logs a refusal."""
        if same_origin(request, self.public_url):
            return True
        log.warning(
            "dashboard form from a foreign origin refused",
            origin=request.headers.get("Origin", "")[:200],
            path=request.path,
            remote=request.remote,
        )
        return False

    # ---- pages ------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        """GET /: the dashboard."""
        s = self.require(request)
        ctx = await self.context(s)
        return aiohttp_jinja2.render_template("dashboard.html", request, ctx)

    async def context(self, s: Session) -> dict[str, Any]:
        """Everything the panels show, for one session (its CSRF token and scopes)."""
        d = self.d
        assert d.store is not None
        conn = d.store.reader
        now = d.clock.now()
        open_ = await views.find_incidents(conn, "open", limit=50)
        incidents = []
        for inc in open_:
            tail = await views.timeline_tail(conn, inc.id, TIMELINE_TAIL)
            incidents.append({**views.incident_view(inc), "timeline": tail})
        try:
            oncall = views.oncall(d, datetime.fromtimestamp(now, UTC))
        except (ValueError, OverflowError):
            oncall = None
        active_windows = [
            views.window_view(w, now) for w in d.config.maintenance if window_active(w, now)
        ]
        sil = [views.silence_view(x, now) for x in await silences.listing(conn, now)]
        sites = views.sites(d, open_)
        return {
            "who": s.principal.name,
            "can_write": s.can("write"),
            "csrf": s.csrf,
            "sites": sites,
            "incidents": incidents,
            "counts": views.counts(open_),
            "colours": {
                c: sum(1 for x in sites if x["colour"] == c) for c in ("red", "amber", "green")
            },
            "oncall": oncall,
            "windows": active_windows,
            "silences": sil,
            "ready": all(d.readiness().values()),
            "now": views.ts(now),
        }

    def panels(self, request: web.Request, ctx: dict[str, Any]) -> dict[str, str]:
        """Each panel's HTML (the SSE payload)."""
        env = aiohttp_jinja2.get_env(request.app)
        return {p: env.get_template(f"_{p}.html").render(ctx) for p in PANELS}

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET /ui/events: Server-Sent Events with the panels whenever they change."""
        s = self.require(request)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        await resp.prepare(request)
        streams: set[web.StreamResponse] = request.app[STREAMS_KEY]
        streams.add(resp)
        last: dict[str, str] = {}
        quiet = 0.0
        try:
            await resp.write(b"retry: 2000\n\n")
            while not self._stop.is_set() and self.sessions.get(s.id) is not None:
                panels = self.panels(request, await self.context(s))
                # Only the panels that changed (usually just the summary's clock) travel.
                changed = {k: v for k, v in panels.items() if last.get(k) != v}
                if changed:
                    await resp.write(f"event: panels\ndata: {json.dumps(changed)}\n\n".encode())
                    last, quiet = panels, 0.0
                elif quiet >= KEEPALIVE:
                    await resp.write(b": keepalive\n\n")
                    quiet = 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), PUSH_EVERY)
                quiet += PUSH_EVERY
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            streams.discard(resp)
        return resp

    def reloaded(self, config: Config) -> None:
        """After a reload: end sessions whose token was removed or lost a scope."""
        self.public_url = config.daemon.public_url or None
        ended = self.sessions.retain({t.name: frozenset(t.scopes) for t in config.api.tokens})
        if ended:
            log.info("dashboard sessions ended by a token change", sessions=ended)

    async def on_shutdown(self, _app: web.Application) -> None:
        """End the event streams so a stop does not wait for browsers to disconnect."""
        self._stop.set()

    # ---- actions ----------------------------------------------------------------------

    async def acting(self, request: web.Request) -> tuple[Session, Any]:
        """The session and form of a state-changing POST: CSRF token and write scope checked."""
        s = self.require(request)
        form = await request.post()
        if not same(str(form.get("csrf", "")), s.csrf):
            raise web.HTTPForbidden(text="CSRF token missing or wrong; reload the page")
        if not self.from_here(request):
            raise web.HTTPForbidden(text="this form was sent from another site")
        if not s.can("write"):
            raise web.HTTPForbidden(text="this login's token lacks the write scope")
        return s, form

    async def act(self, request: web.Request) -> web.StreamResponse:
        """POST /ui/incidents/{ref}/{action}: ack, resolve or note, through the shared actions."""
        s, form = await self.acting(request)
        acts = self.d.actions
        assert acts is not None
        ref, action = request.match_info["ref"], request.match_info["action"]
        who = s.principal.name
        if action == "ack":
            res = await acts.ack(ref, who, "dashboard")
        elif action == "resolve":
            res = await acts.resolve(ref, who, "dashboard")
        elif action == "note":
            res = await acts.note(ref, who, str(form.get("text", ""))[:4000])
        else:
            raise web.HTTPNotFound()
        if not res.ok:
            if res.message.startswith("no incident"):
                raise web.HTTPNotFound(text=res.message)
            raise web.HTTPBadRequest(text=res.message)
        raise web.HTTPSeeOther(f"/#incident-{res.code}")

    async def expire_silence(self, request: web.Request) -> web.StreamResponse:
        """POST /ui/silences/{id}/expire."""
        await self.acting(request)
        d = self.d
        assert d.store is not None and d.engine is not None
        sid = request.match_info["id"]
        if not sid.isdigit() or len(sid) > 12:
            raise web.HTTPNotFound()
        await silences.expire(d.store, d.engine, int(sid), d.clock.now())
        raise web.HTTPSeeOther("/#panel-maintenance")


async def _security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    if request.path.startswith(("/api/", "/metrics", "/twilio/")):
        return
    resp.headers.setdefault("Content-Security-Policy", _CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if request.path in ("/", "/login") or request.path.startswith("/ui/"):
        resp.headers.setdefault("Cache-Control", "no-store")


def setup(app: web.Application, daemon: Daemon) -> Dashboard:
    """Mount the dashboard, login, status page and static assets on `app`."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("nocd", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    dash = Dashboard(daemon)
    daemon.reload_hooks.append(dash.reloaded)
    app[STREAMS_KEY] = set()
    app.on_shutdown.append(dash.on_shutdown)
    app.on_response_prepare.append(_security_headers)
    static = resources.files("nocd") / "static"
    app.add_routes(
        [
            web.get("/", dash.index),
            web.get("/login", dash.login_page),
            web.post("/login", dash.login),
            web.post("/logout", dash.logout),
            # No HEAD: the stream writes its events after the headers, which on a HEAD
            # would put body bytes on a keep-alive connection (the next response desyncs).
            web.get("/ui/events", dash.stream, allow_head=False),
            web.post("/ui/incidents/{ref}/{action}", dash.act),
            web.post("/ui/silences/{id}/expire", dash.expire_silence),
            *status_page.routes(daemon),
            web.static("/static", str(static)),
        ]
    )
    return dash
