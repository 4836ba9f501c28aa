"""Heartbeat checks: the book, the probe, and the POST route on a real local aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from checks import heartbeat
from checks.resources import close_all
from nocd.intake.heartbeat import routes
from nocd.model import FailureClass, Observation, Severity

TOKEN = "hb-token-0123"


@pytest.fixture(autouse=True)
async def _close_resources() -> AsyncIterator[None]:
    yield
    await close_all()


def cfg(**extra: Any) -> heartbeat.Config:
    return heartbeat.Config.model_validate(
        {"name": "nightly-backup", "type": "heartbeat", "period": "1h", **extra}
    )


def test_book_counts_from_start_then_from_last_beat() -> None:
    now = [100.0]
    b = heartbeat.HeartbeatBook(lambda: now[0])
    now[0] = 130.0
    assert b.silence("x") == (30.0, False)
    b.beat("x")
    now[0] = 135.0
    assert b.silence("x") == (5.0, True)


async def test_probe_grace_then_missing_then_recovered() -> None:
    c = cfg(period="1s", interval="1s", timeout="1s")
    obs = await heartbeat.probe(c, 0.0)
    assert obs.ok and obs.detail == "waiting for first"
    await asyncio.sleep(1.05)
    obs = await heartbeat.probe(c, 0.0)
    assert obs.failure is FailureClass.MISSING
    assert obs.detail.startswith("no heartbeat since nocd started")
    v = heartbeat.evaluate(obs, c)
    assert (v.severity, v.failure) == (Severity.CRITICAL, FailureClass.MISSING)
    heartbeat.book().beat("nightly-backup")
    assert (await heartbeat.probe(c, 0.0)).ok
    await asyncio.sleep(1.05)
    obs = await heartbeat.probe(c, 0.0)
    assert obs.detail.startswith("no heartbeat for 1s")
    assert heartbeat.evaluate(obs, cfg(on_failure="degraded")).severity is Severity.DEGRADED


def test_period_validated() -> None:
    with pytest.raises(ValidationError, match="period"):
        heartbeat.Config.model_validate({"name": "x", "type": "heartbeat"})
    with pytest.raises(ValidationError, match="at least 1s"):
        cfg(period="100ms")


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], list[tuple[str, Observation]]]]:
    def authorize(request: web.Request, scope: str) -> None:
        assert scope == "write"
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized(text="missing or wrong token")

    submitted: list[tuple[str, Observation]] = []
    app = web.Application()
    app.add_routes(
        routes(authorize, {"nightly-backup"}.__contains__, lambda n, o: submitted.append((n, o)))
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c, submitted


async def test_post_records_a_heartbeat(
    client: tuple[TestClient[Any, Any], list[tuple[str, Observation]]],
) -> None:
    c, submitted = client
    check = cfg(period="1s", interval="1s", timeout="1s")
    heartbeat.book()  # the daemon creates the book at start; the grace counts from then
    await asyncio.sleep(1.05)
    assert not (await heartbeat.probe(check, 0.0)).ok
    resp = await c.post(
        "/api/v1/heartbeat/nightly-backup", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200
    assert await resp.json() == {"check": "nightly-backup", "status": "recorded"}
    assert (await heartbeat.probe(check, 0.0)).ok
    assert [n for n, o in submitted if o.ok] == ["nightly-backup"]


async def test_post_needs_token_and_known_name(
    client: tuple[TestClient[Any, Any], list[tuple[str, Observation]]],
) -> None:
    c, submitted = client
    resp = await c.post("/api/v1/heartbeat/nightly-backup")
    assert resp.status == 401
    resp = await c.post(
        "/api/v1/heartbeat/unknown-job", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 404
    assert "no heartbeat check named 'unknown-job'" in (await resp.json())["error"]
    assert (await c.get("/api/v1/heartbeat/nightly-backup")).status == 405
    assert submitted == []
    assert heartbeat.book().last == {}
