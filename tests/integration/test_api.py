"""The JSON API against a running daemon: every endpoint, auth failures change nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.integration.api_world import (
    READ_TOKEN,
    SECRET_MARKERS,
    WRITE_TOKEN,
    World,
    running_world,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(tmp_path_factory, "api") as w:
        yield w


READ_PATHS = [
    "/api/v1/status",
    "/api/v1/checks",
    "/api/v1/checks/main-street-pbx",
    "/api/v1/sites",
    "/api/v1/sites/main-street",
    "/api/v1/incidents",
    "/api/v1/incidents/1",
    "/api/v1/incidents/1/rfo",
    "/api/v1/tickets",
    "/api/v1/maintenance",
    "/api/v1/silences",
    "/api/v1/oncall",
]
WRITE_CALLS: list[tuple[str, Any]] = [
    ("/api/v1/incidents/1/ack", None),
    ("/api/v1/incidents/1/resolve", None),
    ("/api/v1/incidents/1/notes", {"text": "root cause: forged"}),
    ("/api/v1/silences", {"name": "x", "match": {"sites": ["main-street"]}, "duration": "1h"}),
    ("/api/v1/silences/1/expire", None),
]


async def _state(world: World) -> str:
    """A fingerprint of everything a write could change."""
    conn = world.daemon.store.reader  # type: ignore[union-attr]
    out = []
    for table in ("incidents", "timeline", "silences", "tickets"):
        async with conn.execute(f"SELECT * FROM {table} ORDER BY 1") as cur:
            out.append(repr([tuple(r) for r in await cur.fetchall()]))
    return "\n".join(out)


@pytest.mark.parametrize("path", READ_PATHS)
async def test_reads_need_a_valid_token(world: World, path: str) -> None:
    status, body = await world.call("GET", path, token=None)
    assert status == 401 and "token" in body["error"]
    status, body = await world.call("GET", path, token="not-a-token")
    assert status == 401
    status, _ = await world.call("GET", path, token=READ_TOKEN)
    assert status == 200


async def test_writes_refused_without_token_or_write_scope_change_nothing(world: World) -> None:
    # The probes make no transitions meanwhile (one site stays down, one up): only a call could.
    before = await _state(world)
    for path, body in WRITE_CALLS:
        assert (await world.call("POST", path, token=None, body=body))[0] == 401
        assert (await world.call("POST", path, token="wrong", body=body))[0] == 401
        status, reply = await world.call("POST", path, token=READ_TOKEN, body=body)
        assert status == 403 and "write scope" in reply["error"], path
    assert await _state(world) == before


async def test_status_reports_the_open_critical_incident(world: World) -> None:
    status, body = await world.call("GET", "/api/v1/status", token=READ_TOKEN)
    assert status == 200
    assert body["ready"] is True
    assert body["incidents"]["by_severity"]["critical"] >= 1
    assert "main-street-pbx" in body["checks"]["failing_names"]
    assert body["ok"] is False


async def test_checks_show_state_and_last_observation(world: World) -> None:
    _, body = await world.call("GET", "/api/v1/checks?status=failing")
    names = [c["name"] for c in body["checks"]]
    assert "main-street-pbx" in names and "elm-street-pbx" not in names
    _, check = await world.call("GET", "/api/v1/checks/main-street-pbx")
    assert check["status"] == "critical"
    assert check["state"]["failure"] == "refused"
    assert check["last"]["ok"] is False and check["last"]["failure"] == "refused"
    status, body = await world.call("GET", "/api/v1/checks/no-such-check")
    assert status == 404 and "no-such-check" in body["error"]
    status, body = await world.call("GET", "/api/v1/checks?status=bogus")
    assert status == 400


async def test_sites_have_traffic_lights_phones_and_incidents(world: World) -> None:
    _, body = await world.call("GET", "/api/v1/sites")
    sites = {s["key"]: s for s in body["sites"]}
    assert sites["main-street"]["colour"] == "red"
    assert sites["main-street"]["incidents"][0]["severity"] == "critical"
    assert sites["elm-street"]["colour"] == "green"
    assert sites["elm-street"]["phones"] == {"registered": 3, "expected": 3}
    _, one = await world.call("GET", "/api/v1/sites/elm-street")
    assert one["name"] == "Elm Street"
    assert (await world.call("GET", "/api/v1/sites/nowhere"))[0] == 404


async def test_incident_filters_and_detail_with_timeline(world: World) -> None:
    _, body = await world.call("GET", "/api/v1/incidents?severity=critical&site=main-street")
    [inc] = body["incidents"]
    assert inc["members"][0]["check"] == "main-street-pbx"
    _, none = await world.call("GET", "/api/v1/incidents?severity=degraded")
    assert none["incidents"] == []
    _, detail = await world.call("GET", f"/api/v1/incidents/{inc['code'].lower()}")
    assert detail["id"] == inc["id"]
    assert detail["timeline"][0]["kind"] == "opened"
    for bad in ("state=nope", "severity=nope", "limit=0", "limit=x"):
        assert (await world.call("GET", f"/api/v1/incidents?{bad}"))[0] == 400, bad
    assert (await world.call("GET", "/api/v1/incidents/ZZZZZZ"))[0] == 404
    assert (await world.call("GET", "/api/v1/incidents/99999999999999999999"))[0] == 404


async def test_ack_note_resolve_through_the_shared_actions(world: World) -> None:
    inc = await world.wait_for_incident()
    code = inc["code"]
    status, body = await world.call("POST", f"/api/v1/incidents/{code}/ack", body={"via": "cli"})
    assert (status, body["changed"], body["state"]) == (200, True, "acknowledged")
    status, body = await world.call("POST", f"/api/v1/incidents/{code}/ack")
    assert (status, body["changed"]) == (200, False)  # a repeat changes nothing
    status, body = await world.call(
        "POST", f"/api/v1/incidents/{code}/notes", body={"text": "root cause: cable pulled"}
    )
    assert (status, body["message"]) == (200, "note added")
    assert (await world.call("POST", f"/api/v1/incidents/{code}/notes", body={"text": " "}))[
        0
    ] == 400
    assert (await world.call("POST", f"/api/v1/incidents/{code}/notes", raw=b"{"))[0] == 400
    _, detail = await world.call("GET", f"/api/v1/incidents/{code}")
    kinds = [(e["kind"], e["text"]) for e in detail["timeline"]]
    assert ("ack", "acknowledged by alice-ops via cli") in kinds
    assert ("note", "root cause: cable pulled") in kinds
    _, rfo = await world.call("GET", f"/api/v1/incidents/{code}/rfo")
    assert "cable pulled" in rfo
    _, html = await world.call("GET", f"/api/v1/incidents/{code}/rfo?format=html")
    assert html.lstrip().startswith("<") and "cable pulled" in html
    status, body = await world.call("POST", f"/api/v1/incidents/{code}/resolve")
    assert (status, body["changed"], body["state"]) == (200, True, "resolved")
    status, body = await world.call("POST", f"/api/v1/incidents/{code}/resolve")
    assert (status, body["changed"]) == (200, False)
    status, body = await world.call("POST", "/api/v1/incidents/QQQQ/ack")
    assert (status, body["ok"]) == (404, False)
    assert (await world.call("POST", f"/api/v1/incidents/{code}/ack", body={"via": "x"}))[0] == 400


async def test_tickets_list_one_per_incident(world: World) -> None:
    _, body = await world.call("GET", "/api/v1/tickets")
    incidents = [t["incident"] for t in body["tickets"]]
    assert incidents and len(incidents) == len(set(incidents))
    assert body["tickets"][0]["priority"] == "P1"
    assert (await world.call("GET", "/api/v1/tickets?status=bogus"))[0] == 400


async def test_silence_create_list_expire_reaches_the_engine(world: World) -> None:
    engine = world.daemon.engine
    assert engine is not None
    req = {
        "name": "elm-street cabling",
        "match": {"sites": ["elm-street"]},
        "duration": "2h",
        "comment": "planned work",
        "public": True,
    }
    status, made = await world.call("POST", "/api/v1/silences", body=req)
    assert status == 201 and made["state"] == "active" and made["created_by"] == "alice-ops"
    assert made["id"] in [s.id for s in engine.silences]
    _, listed = await world.call("GET", "/api/v1/silences")
    assert made["id"] in [s["id"] for s in listed["silences"]]
    _, maint = await world.call("GET", "/api/v1/maintenance")
    assert maint["windows"][0]["name"] == "sunday-upgrade"
    assert maint["windows"][0]["starts_at"] == "2030-01-06T02:00:00Z"
    assert made["id"] in [s["id"] for s in maint["silences"]]
    status, body = await world.call("POST", f"/api/v1/silences/{made['id']}/expire")
    assert (status, body["changed"], body["silence"]["state"]) == (200, True, "expired")
    assert made["id"] not in [s.id for s in engine.silences]
    status, body = await world.call("POST", f"/api/v1/silences/{made['id']}/expire")
    assert (status, body["changed"]) == (200, False)
    _, listed = await world.call("GET", "/api/v1/silences")
    assert made["id"] not in [s["id"] for s in listed["silences"]]
    _, listed = await world.call("GET", "/api/v1/silences?all=true")
    assert made["id"] in [s["id"] for s in listed["silences"]]
    assert (await world.call("POST", "/api/v1/silences/424242/expire"))[0] == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "match": {}, "duration": "1h"}, "at least one"),
        ({"name": "x", "match": {"sites": ["nowhere"]}, "duration": "1h"}, "site 'nowhere'"),
        ({"name": "x", "match": {"checks": ["main-street-pbx"]}}, "exactly one"),
        ({"name": "x", "match": {"checks": ["main-street-pbx"]}, "duration": "90d"}, "31 days"),
        (
            {"name": "x", "match": {"sites": ["elm-street"]}, "ends_at": "2020-01-01T00:00:00Z"},
            "already be over",
        ),
        ({"name": "x", "match": {"sites": ["elm-street"]}, "ends_at": "2030-01-01T00:00"}, "zone"),
        ({"name": "x", "match": {"sites": ["elm-street"]}, "duration": "1h", "x": 1}, "x:"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_silences_are_refused_with_the_reason(
    world: World, body: Any, message: str
) -> None:
    status, reply = await world.call("POST", "/api/v1/silences", body=body)
    assert status == 400 and message in reply["error"], reply


async def test_oncall_now_and_at_a_time(world: World) -> None:
    _, now = await world.call("GET", "/api/v1/oncall")
    assert now["schedules"][0]["schedule"] == "noc-primary"
    # Weekly rotation from Monday 2026-01-05 09:00 New York: alice first, bob the next week.
    _, first = await world.call("GET", "/api/v1/oncall?at=2026-01-06T12:00:00-05:00")
    assert first["schedules"][0]["person"] == "alice"
    assert first["schedules"][0]["until"] == "2026-01-12T14:00:00Z"
    _, second = await world.call("GET", "/api/v1/oncall?at=2026-01-13T12:00:00Z")
    assert second["schedules"][0]["name"] == "Bob Example"
    assert (await world.call("GET", "/api/v1/oncall?at=yesterday"))[0] == 400


async def test_unknown_routes_and_methods_answer_json(world: World) -> None:
    status, body = await world.call("GET", "/api/v1/nothing-here")
    assert status == 404 and body["error"]
    status, body = await world.call("DELETE", "/api/v1/incidents")
    assert status == 405 and body["error"]


async def test_no_secret_ever_appears_in_any_answer(world: World) -> None:
    _, doc = await world.call("GET", "/api/v1/openapi.json", token=None)
    texts = [json.dumps(doc)]
    for path in READ_PATHS:
        texts.append(json.dumps((await world.call("GET", path))[1]))
    blob = "\n".join(texts)
    for marker in SECRET_MARKERS:
        assert marker not in blob
    assert "elm-street-phones" in blob  # the check holding the ARI password was listed
    assert WRITE_TOKEN not in blob
