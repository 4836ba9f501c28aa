"""Dashboard sessions: log in with an API token, get an opaque cookie; CSRF on every form.

The cookie holds only a random id; the principal lives server-side in memory (lost on
restart: people log in again) with an absolute expiry. Cookies are HttpOnly and
SameSite=Strict, and Secure when `daemon.public_url` is https. On a plain-http listener
(the loopback default) a Secure cookie would never be sent back, so the flag is off there:
put TLS in front (public_url https://…) before exposing the dashboard beyond loopback.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from nocd.web.auth import Principal

COOKIE = "nocd_session"
LOGIN_COOKIE = "nocd_login"  # double-submit token for the login form (no session yet)
TTL = 8 * 3600.0  # one shift; then log in again
MAX_SESSIONS = 1000  # bound memory: the oldest session goes first


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser."""

    id: str
    principal: Principal
    csrf: str
    expires: float

    def can(self, scope: str) -> bool:
        """Whether the token used to log in has `scope`."""
        return scope in self.principal.scopes


class Sessions:
    """In-memory sessions by opaque id, with expiry, a size bound and revocation on reload."""

    def __init__(self, monotonic: Callable[[], float], ttl: float = TTL) -> None:
        self._now = monotonic
        self._ttl = ttl
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self, principal: Principal) -> Session:
        """A new session for `principal`."""
        s = Session(
            secrets.token_urlsafe(32), principal, secrets.token_urlsafe(32), self._now() + self._ttl
        )
        self._by_id[s.id] = s
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session with id `sid`, or None (unknown or expired)."""
        if not sid:
            return None
        s = self._by_id.get(sid)
        if s is not None and s.expires <= self._now():
            del self._by_id[sid]
            return None
        return s

    def drop(self, sid: str) -> None:
        """Log out."""
        self._by_id.pop(sid, None)

    def retain(self, tokens: Mapping[str, frozenset[str]]) -> int:
        """After a reload: end sessions whose token was removed or lost scopes; returns count."""
        gone = [
            sid
            for sid, s in self._by_id.items()
            if not s.principal.scopes <= tokens.get(s.principal.name, frozenset())
        ]
        for sid in gone:
            del self._by_id[sid]
        return len(gone)

    def __len__(self) -> int:
        return len(self._by_id)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF tokens (None never matches)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def same_origin(request: web.Request, public_url: str | None) -> bool:
    """Whether a state-changing request may come from where its Origin header says.

    Defence in depth behind the CSRF token: a browser names the site that sent a form, and
    a foreign one is refused even with a valid token. Our own origin is the configured
    public URL (what the browser sees behind a proxy) or the Host this listener was
    addressed by. Without an Origin, or with the opaque "null" (what browsers send for our
    own forms, because our pages set `Referrer-Policy: no-referrer`), the token alone decides.
    """
    origin = (request.headers.get("Origin") or "null").strip().lower().rstrip("/")
    if origin == "null":
        return True
    if public_url:
        public = URL(public_url)
        if public.host and origin == str(public.origin()).lower():
            return True
    scheme, sep, host = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and host == request.host.lower()


def set_cookie(resp: web.StreamResponse, name: str, value: str, secure: bool, max_age: int) -> None:
    """Set an HttpOnly, SameSite=Strict cookie (Secure when served over https)."""
    resp.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="Strict", secure=secure
    )
