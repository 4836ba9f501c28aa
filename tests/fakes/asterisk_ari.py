"""A protocol-faithful fake of Asterisk ARI's endpoint listing (Asterisk is not in Debian 12).

Follows the Asterisk REST Interface docs: `GET /ari/endpoints` returns a JSON list of
Endpoint objects `{technology, resource, state, channel_ids}` where state is one of
"unknown", "offline", "online"; authentication is HTTP Basic or `?api_key=user:password`
(ari.conf users), answering 401 `{"message": "Authentication required"}` otherwise.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeAri:
    """Endpoints by `technology/resource` with their state; an aiohttp app serves them."""

    user: str = "nocd"
    password: str = "ari-secret"
    endpoints: dict[str, str] = field(default_factory=dict)  # "PJSIP/101" → "online"
    requests: int = 0

    def _authorized(self, request: web.Request) -> bool:
        expected = f"{self.user}:{self.password}"
        if request.query.get("api_key") == expected:
            return True
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                return base64.b64decode(header[6:]).decode() == expected
            except ValueError:
                return False
        return False

    async def list_endpoints(self, request: web.Request) -> web.Response:
        """GET /ari/endpoints."""
        self.requests += 1
        if not self._authorized(request):
            return web.json_response(
                {"message": "Authentication required"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'},
            )
        body = []
        for name, state in self.endpoints.items():
            tech, _, resource = name.partition("/")
            body.append(
                {"technology": tech, "resource": resource, "state": state, "channel_ids": []}
            )
        return web.json_response(body)

    def app(self) -> web.Application:
        """The aiohttp application (mount it on a TestServer on 127.0.0.1)."""
        app = web.Application()
        app.router.add_get("/ari/endpoints", self.list_endpoints)
        return app
