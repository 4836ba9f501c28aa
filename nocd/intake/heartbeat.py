"""`POST /api/v1/heartbeat/{name}`: cron jobs, backups and PBX scripts report that they ran."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from aiohttp import web

from checks.heartbeat import book
from nocd.model import Observation

Authorize = Callable[[web.Request, str], Awaitable[None] | None]
Submit = Callable[[str, Observation], None]


def routes(
    authorize: Authorize,
    known: Callable[[str], bool],
    submit: Submit | None = None,
) -> list[web.RouteDef]:
    """The heartbeat route; `known(name)` says whether `name` is a heartbeat check.

    With `submit`, a heartbeat also feeds an ok observation at once, so a recovered
    sender clears its incident without waiting for the next probe.
    """

    async def beat(request: web.Request) -> web.Response:
        result = authorize(request, "write")
        if inspect.isawaitable(result):
            await result
        name = request.match_info["name"]
        if not known(name):
            return web.json_response({"error": f"no heartbeat check named {name!r}"}, status=404)
        book().beat(name)
        if submit is not None:
            submit(name, Observation.success("heartbeat received", silent_s=0.0, seen=True))
        return web.json_response({"check": name, "status": "recorded"})

    return [web.post("/api/v1/heartbeat/{name}", beat)]
