"""Bearer-token auth for the API: tokens hashed at load, scopes read/write, constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from nocd.api_config import ApiConfig


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the token's name and scopes."""

    name: str
    scopes: frozenset[str]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuth:
    """Checks `Authorization: Bearer …` against the configured tokens (stored as SHA-256)."""

    def __init__(self, config: ApiConfig) -> None:
        self._tokens: list[tuple[bytes, Principal]] = []
        self.set_config(config)

    def set_config(self, config: ApiConfig) -> None:
        """Swap the token set (config reload)."""
        tokens = []
        for t in config.tokens:
            digest = (
                _digest(t.token.get_secret_value()) if t.token is not None
                else bytes.fromhex(t.token_sha256 or "")
            )
            tokens.append((digest, Principal(t.name, frozenset(t.scopes))))
        self._tokens = tokens

    def identify(self, header: str | None) -> Principal | None:
        """The principal for an Authorization header value, or None."""
        if not header or not header.startswith("Bearer "):
            return None
        digest = _digest(header[7:].strip())
        found = None
        # Compare against every token (no early exit) so timing reveals nothing.
        for known, principal in self._tokens:
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def authorize(self, request: web.Request, scope: str) -> Principal:
        """Raise 401 without a valid token, 403 without the scope; return the principal."""
        principal = self.identify(request.headers.get("Authorization"))
        if principal is None:
            raise web.HTTPUnauthorized(
                text='{"error": "a valid bearer token is required"}',
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="nocd"'},
            )
        if scope not in principal.scopes:
            raise web.HTTPForbidden(
                text=f'{{"error": "this token lacks the {scope} scope"}}',
                content_type="application/json",
            )
        return principal
