"""Alertmanager intake: matchers, severity mapping, aggregation and rejection of bad payloads."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from checks import alertmanager as am
from nocd.intake.alertmanager import AlertmanagerIntake
from nocd.model import FailureClass, Observation, Severity

TOKEN = "am-token-0123"


def rule(**extra: Any) -> am.Config:
    raw = {
        "name": "sbc-down",
        "type": "alertmanager",
        "matchers": ['alertname="SbcDown"', 'env!="staging"'],
        **extra,
    }
    return am.Config.model_validate(raw)


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('alertname="SbcDown"', {"alertname": "SbcDown"}, True),
        ("alertname=SbcDown", {"alertname": "SbcDown"}, True),  # unquoted value
        ('job=~"sbc-.*"', {"job": "sbc-paris"}, True),
        ('job=~"sbc"', {"job": "sbc-paris"}, False),  # regexes are anchored
        ('job!~"sbc-.*"', {"job": "pbx-1"}, True),
        ('env!="staging"', {}, True),  # a missing label is ""
        ('env=""', {}, True),
        ('summary="a \\"quoted\\" word"', {"summary": 'a "quoted" word'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert am.Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"matchers": []}, "at least 1"),
        ({"matchers": ["alertname"]}, "invalid matcher"),
        ({"matchers": ['job=~"("']}, "invalid regular expression"),
        ({"severity_map": {"warning": "ok"}}, "cannot map to ok"),
    ],
)
def test_invalid_configs(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        rule(**extra)
    assert message in str(err.value)


def alert(status: str, instance: str, severity: str = "critical", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "SbcDown", "instance": instance, "severity": severity, **labels},
        "annotations": {"summary": f"{instance} unreachable"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com/graph",
        "fingerprint": f"fp-{instance}",
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SbcDown"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "nocd",
        "groupLabels": {"alertname": "SbcDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com",
        "alerts": list(alerts),
    }


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], AlertmanagerIntake, list[Any]]]:
    def authorize(request: web.Request, scope: str) -> None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized(text="bad token")

    seen: list[tuple[str, Observation]] = []
    intake = AlertmanagerIntake(
        lambda: [rule(), rule(name="all-sbc", matchers=["job=~sbc.*"])],
        lambda n, o: seen.append((n, o)),
    )
    app = web.Application()
    app.add_routes(intake.routes(authorize))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c, intake, seen


async def post(c: TestClient[Any, Any], body: Any, token: str = TOKEN) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await c.post(
        "/api/v1/alertmanager",
        data=io.BytesIO(data),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def test_firing_aggregates_and_resolves_per_alert(client: Any) -> None:
    c, intake, seen = client
    resp = await post(
        c,
        payload(
            alert("firing", "sbc1:9100", "warning"),
            alert("firing", "sbc2:9100", "critical", site="paris"),
        ),
    )
    assert resp.status == 200
    assert (await resp.json())["checks"] == ["sbc-down"]
    name, obs = seen[-1]
    assert name == "sbc-down" and obs.failure is FailureClass.EXTERNAL
    assert obs.detail == "SbcDown firing: sbc2:9100 unreachable (+1 more)"
    assert obs.values["site"] == "paris"
    assert am.evaluate(obs, rule()).severity is Severity.CRITICAL
    # One of two resolves: still firing, now only the warning one.
    await post(c, payload(alert("resolved", "sbc2:9100")))
    obs = seen[-1][1]
    assert not obs.ok and obs.values["alerts"] == 1
    assert am.evaluate(obs, rule()).severity is Severity.DEGRADED
    await post(c, payload(alert("resolved", "sbc1:9100")))
    assert seen[-1][1].ok and seen[-1][1].detail == "SbcDown resolved"
    assert intake.firing == {}


async def test_matching_and_unmatched(client: Any) -> None:
    c, intake, seen = client
    await post(c, payload(alert("firing", "sbc1", env="staging")))  # excluded by env!=
    await post(c, payload(alert("firing", "sbc1", job="sbc-edge")))  # both rules
    assert [n for n, _ in seen] == ["sbc-down", "all-sbc"]
    assert intake.unmatched == 1 and intake.received == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        ({"version": "3", "status": "firing", "alerts": []}, "at version"),
        (
            {"version": "4", "status": "firing", "alerts": [{"status": "exploded", "labels": {}}]},
            "at alerts.0.status",
        ),
        (
            {
                "version": "4",
                "status": "firing",
                "alerts": [{"status": "firing", "labels": {"a": 1}}],
            },
            "at alerts.0.labels.a",
        ),
        (b"x" * (5 << 20), "payload too large"),
    ],
)
async def test_garbage_is_rejected_and_changes_nothing(
    client: Any, body: Any, message: str
) -> None:
    c, intake, seen = client
    await post(c, payload(alert("firing", "sbc1")))
    before = (list(seen), {k: dict(v) for k, v in intake.firing.items()})
    resp = await post(c, body)
    assert resp.status in (400, 413)
    assert message in (await resp.json())["error"]
    assert (list(seen), {k: dict(v) for k, v in intake.firing.items()}) == before
    assert intake.rejected == 1


async def test_auth_is_required(client: Any) -> None:
    c, _, seen = client
    resp = await post(c, payload(alert("firing", "sbc1")), token="wrong")
    assert resp.status == 401
    assert seen == []


async def test_probe_says_passive() -> None:
    obs = await am.probe(rule(), 0.0)
    assert obs.detail == am.PASSIVE_DETAIL
    assert am.evaluate(obs, rule()).severity is Severity.UNKNOWN
