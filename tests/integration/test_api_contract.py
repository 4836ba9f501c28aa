"""Property test: schemathesis drives every documented operation of a running daemon.

No request may get a 5xx (501 "not available" is a documented answer, not a crash), and
every response must match the OpenAPI document (status codes, content types, schemas).
The daemon runs on its own event loop in a thread, since schemathesis calls are blocking.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from nocd.web.openapi import document
from tests.integration.api_world import WRITE_TOKEN, World, start_world, stop_world

schema = schemathesis.openapi.from_dict(document())

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


class LiveDaemon:
    """A daemon on a private loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    runner = LiveDaemon()
    with pytest.MonkeyPatch.context() as mp:
        world = runner.run(start_world(tmp_path_factory.mktemp("contract"), mp))
        try:
            runner.run(world.wait_for_incident())
            yield world
        finally:
            runner.run(stop_world(world))
            runner.close()


def test_the_running_daemon_serves_exactly_the_documented_operations(live: World) -> None:
    app = live.daemon._runner.app  # type: ignore[union-attr]
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in document()["paths"].items() for m in ops}
    assert served - {("GET", "/api/v1/openapi.json")} == documented


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_errors_and_responses_match_the_document(case: Any, live: World) -> None:
    response = case.call(base_url=live.url, headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
    case.validate_response(response, checks=CHECKS)
