"""sip_registrations: AOR matching, thresholds, and Asterisk ARI through a faithful fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from checks.resources import close_all
from checks.sip.registrations import Config, evaluate, find_missing, normalize_aor, probe
from nocd.model import FailureClass, Observation, Severity
from tests.fakes.asterisk_ari import FakeAri


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def ari() -> AsyncIterator[tuple[FakeAri, str]]:
    fake = FakeAri(endpoints={"PJSIP/101": "online", "PJSIP/102": "offline", "PJSIP/103": "online"})
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield fake, f"http://127.0.0.1:{server.port}/ari"
    finally:
        await server.close()


def _cfg(target: str, expected: tuple[str, ...], **kw: object) -> Config:
    return Config.model_validate(
        {"name": "site-a", "type": "sip_registrations", "target": target, "expected": expected} | kw
    )


def test_normalize_aor() -> None:
    assert normalize_aor("sip:Alice@Example.COM;transport=udp") == "Alice@example.com"
    assert normalize_aor("<sips:bob@h.example.com>") == "bob@h.example.com"
    assert normalize_aor("101") == "101"


@pytest.mark.parametrize(
    ("expected", "registered", "missing"),
    [
        (["alice@example.com"], ["alice@example.com"], []),  # exact
        (["sip:alice@EXAMPLE.com"], ["alice@example.com"], []),  # scheme, host case
        (["alice@example.com"], ["alice"], []),  # registrar without use_domain
        (["alice"], ["alice@example.com"], []),  # config without domain
        (["alice@example.com"], ["alice@other.example.com"], ["alice@example.com"]),
        (["Alice"], ["alice"], ["Alice"]),  # the user part is case-sensitive
        (["a", "b", "c"], [], ["a", "b", "c"]),
    ],
)
def test_find_missing(expected: list[str], registered: list[str], missing: list[str]) -> None:
    assert find_missing(expected, registered) == missing


def _obs(expected: int, missing: int) -> Observation:
    names = [f"p{i}" for i in range(missing)]
    values: dict[str, Any] = {
        "expected": expected,
        "registered": expected - missing,
        "missing": names,
    }
    if missing:
        return Observation.failed(FailureClass.MISSING, "x", **values)
    return Observation.success("all", **values)


@pytest.mark.parametrize(
    ("expected", "missing", "kw", "severity"),
    [
        (10, 0, {}, Severity.OK),  # everyone registered
        (10, 1, {}, Severity.DEGRADED),  # one phone down: some phones at a site (P2)
        (10, 4, {}, Severity.DEGRADED),  # below half
        (10, 5, {}, Severity.CRITICAL),  # half the site (default ratio 0.5)
        (10, 10, {}, Severity.CRITICAL),  # the whole site cannot register (P1)
        (10, 2, {"degraded_missing": 3}, Severity.OK),  # tolerate two
        (10, 9, {"critical_missing_ratio": 1.0}, Severity.DEGRADED),  # only all is critical
        (1, 1, {"critical_missing_ratio": 1.0}, Severity.CRITICAL),  # all of one
    ],
)
def test_thresholds(expected: int, missing: int, kw: dict[str, object], severity: Severity) -> None:
    cfg = _cfg("http://127.0.0.1:1/RPC", tuple(f"p{i}" for i in range(expected)), **kw)
    assert evaluate(_obs(expected, missing), cfg).severity is severity


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="at least one expected AOR"):
        _cfg("http://127.0.0.1:1/RPC", ())
    with pytest.raises(ValidationError, match="http:// or https://"):
        _cfg("sip:127.0.0.1", ("a",))
    with pytest.raises(ValidationError, match="no credentials in the URL"):
        _cfg("http://nocd:pw@127.0.0.1:1/RPC", ("a",))
    with pytest.raises(ValidationError, match="both username and password"):
        _cfg("http://127.0.0.1:1/RPC", ("a",), username="x")


async def test_ari_counts_online_endpoints(
    ari: tuple[FakeAri, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = ari
    monkeypatch.setenv("ARI_PW", fake.password)
    cfg = _cfg(
        url,
        ("PJSIP/101", "102", "103", "104"),
        source="asterisk_ari",
        username=fake.user,
        password="${ARI_PW}",
    )
    deadline = asyncio.get_running_loop().time() + 3
    obs = await probe(cfg, deadline)
    assert (obs.values["expected"], obs.values["registered"]) == (4, 2)
    assert obs.values["missing"] == ["102", "104"]
    assert evaluate(obs, cfg).severity is Severity.CRITICAL  # half the site
    fake.endpoints.update({"PJSIP/102": "online", "PJSIP/104": "online"})
    obs = await probe(cfg, asyncio.get_running_loop().time() + 3)
    assert obs.ok and obs.values["registered"] == 4
    assert evaluate(obs, cfg).severity is Severity.OK


async def test_ari_wrong_password_is_auth(
    ari: tuple[FakeAri, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = ari
    monkeypatch.setenv("ARI_PW", "wrong-one")
    cfg = _cfg(url, ("101",), source="asterisk_ari", username=fake.user, password="${ARI_PW}")
    obs = await probe(cfg, asyncio.get_running_loop().time() + 3)
    assert obs.failure is FailureClass.AUTH
    assert "wrong-one" not in obs.detail
    assert evaluate(obs, cfg).severity is Severity.CRITICAL


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b'{"result": {"Domains": "oops"}}', b'{"error": {"code": -32601}}', b"[]"],
)
async def test_garbage_from_the_registrar_is_a_protocol_failure(body: bytes) -> None:
    async def rpc(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/RPC", rpc)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        cfg = _cfg(f"http://127.0.0.1:{server.port}/RPC", ("101",))
        obs = await probe(cfg, asyncio.get_running_loop().time() + 3)
    finally:
        await server.close()
    assert obs.failure is FailureClass.PROTOCOL, obs
    assert evaluate(obs, cfg).severity is Severity.CRITICAL
