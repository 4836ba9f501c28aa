"""The OpenAPI document describes exactly the routes the daemon serves under /api/v1."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.incidents.silences import SilenceRequest
from nocd.model import Severity
from nocd.state import CheckState
from nocd.web.openapi import document
from nocd.web.views import redact_target, status_of


def served() -> set[tuple[str, str]]:
    app = Daemon(load_text("{}", "empty.yaml")).build_app()
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/v1/") and route.method != "HEAD":
            out.add((route.method, path))
    return out


def documented() -> set[tuple[str, str]]:
    doc = document()
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_every_served_route_is_documented_and_nothing_else() -> None:
    # The Alertmanager intake is mounted at start-up, after this app was built.
    assert served() - {("GET", "/api/v1/openapi.json")} == documented() - {
        ("POST", "/api/v1/alertmanager")
    }


def test_every_operation_declares_auth_failures_and_a_scope() -> None:
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            [scope] = op["security"][0]["bearer"]
            assert scope == ("read" if method == "get" else "write"), (method, path)
            for name in re.findall(r"{(\w+)}", path):
                assert name in [p["name"] for p in op["parameters"] if p["in"] == "path"]


def test_schema_refs_resolve() -> None:
    doc = document()
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', repr(doc).replace("'", '"')))
    assert refs and refs <= set(doc["components"]["schemas"])


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("https://user:pw@example.com/x?y=1", "https://example.com/x?y=1"),
        ("http://example.com/a@b", "http://example.com/a@b"),
        ("127.0.0.1:5060", "127.0.0.1:5060"),
        ("sip:alice@example.com", "sip:alice@example.com"),
        (None, None),
    ],
)
def test_targets_lose_url_credentials(target: str | None, shown: str | None) -> None:
    assert redact_target(target) == shown


def test_status_of_a_check() -> None:
    assert status_of(None) == "pending"  # not judged since start-up
    assert status_of(CheckState()) == "ok"
    assert status_of(CheckState(failures=1)) == "soft_failing"
    assert status_of(CheckState(hard=Severity.DEGRADED, failures=3)) == "degraded"


def test_silence_requests_need_a_selector_and_one_end() -> None:
    ok = SilenceRequest.model_validate({"name": "n", "match": {"sites": ["a"]}, "duration": "2h"})
    assert ok.span(1000.0) == (1000.0, 1000.0 + 7200)
    for bad in (
        {"name": "n", "match": {}, "duration": "2h"},
        {"name": "n", "match": {"sites": ["a"]}},
        {"name": "n", "match": {"sites": ["a"]}, "duration": "2h", "ends_at": "2030-01-01T00:00Z"},
        {"name": "", "match": {"sites": ["a"]}, "duration": "2h"},
        {"name": "n", "match": {"sites": ["a"], "nope": 1}, "duration": "2h"},
    ):
        with pytest.raises(ValidationError):
            SilenceRequest.model_validate(bad)
    long = SilenceRequest.model_validate(
        {"name": "n", "match": {"sites": ["a"]}, "duration": "40d"}
    )
    with pytest.raises(ValueError, match="31 days"):
        long.span(0.0)
