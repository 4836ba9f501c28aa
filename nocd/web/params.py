"""Request parameters, JSON bodies and JSON errors for the API (400 on anything malformed)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

log = structlog.get_logger(__name__)

PREFIX = "/api/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API errors as JSON; an unexpected exception is logged and answered 500 without detail."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        resp = error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # 405 keeps its list of allowed methods
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception as exc:  # noqa: BLE001 - the API must answer, and the daemon keep running
        log.error("api handler failed", path=request.path, error=repr(exc))
        return error(500, "internal error (see the daemon log)")


def query_choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    """A query parameter restricted to `allowed` (400 otherwise)."""
    value = request.query.get(name, default)
    if value not in allowed:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be one of {', '.join(allowed)}"}),
            content_type="application/json",
        )
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi] (400 otherwise)."""
    text = request.query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not lo <= int(text) <= hi:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be an integer from {lo} to {hi}"}),
            content_type="application/json",
        )
    return int(text)


async def json_body(request: web.Request, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body (400 when it is not one)."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
        json.dumps(body, ensure_ascii=False).encode()  # lone surrogates cannot be stored
    except (ValueError, UnicodeError):
        raise bad("the body is not valid JSON (UTF-8)") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    return body


def bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def validation_message(exc: ValidationError) -> str:
    """Pydantic errors as one line, without echoing the input."""
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)
