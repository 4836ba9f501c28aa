"""`/healthz` (the process answers) and `/readyz` (scheduler alive, store writable, config)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


def routes(readiness: Callable[[], dict[str, bool]]) -> list[web.RouteDef]:
    """Health routes; `readiness` returns named conditions that must all be true."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        conditions = readiness()
        ok = all(conditions.values())
        return web.json_response(
            {"status": "ready" if ok else "not ready", "conditions": conditions},
            status=200 if ok else 503,
        )

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
