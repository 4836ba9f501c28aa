"""SIP checks against a real Kamailio (and baresip as a phone) on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from checks.resources import close_all
from checks.sip import options, register, registrations
from nocd.model import FailureClass, Severity
from tests.integration.baresip import Baresip
from tests.integration.kamailio import RPC_PASSWORD, RPC_USER, USERS, Kamailio

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    k = Kamailio(tmp_path_factory.mktemp("kamailio-md5"))
    try:
        k.start()
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def kamailio_sha256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    k = Kamailio(tmp_path_factory.mktemp("kamailio-sha256"), algorithm="SHA-256")
    try:
        k.start()
        yield k
    finally:
        k.stop()


@pytest.fixture(autouse=True)
async def _shared_sockets() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for user, (password, _) in USERS.items():
        monkeypatch.setenv(f"SIP_PW_{user.upper()}", password)
    monkeypatch.setenv("SIP_PW_WRONG", "not-the-password")
    monkeypatch.setenv("KAM_RPC_PW", RPC_PASSWORD)
    monkeypatch.setenv("KAM_RPC_BAD", "guess")


def _deadline(seconds: float = 3.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def _opts(target: str, **kw: object) -> options.Config:
    return options.Config(name="t", type="sip_options", target=target, timeout=3, **kw)


def _reg(k: Kamailio, user: str, secret_env: str, target: str | None = None) -> register.Config:
    return register.Config(
        name="r",
        type="sip_register",
        target=target or f"sip:127.0.0.1:{k.udp_port}",
        username=user,
        password="${" + secret_env + "}",
        timeout=3,
        ca_file=str(k.certs.ca) if k.certs else None,
    )


def _aors(k: Kamailio) -> list[str]:
    result = k.rpc("ul.dump")
    assert isinstance(result, dict)
    return [a["Info"]["AoR"] for a in result["Domains"][0]["Domain"]["AoRs"]]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_options_gives_200_over_each_transport(kamailio: Kamailio, transport: str) -> None:
    assert kamailio.certs is not None
    target, extra = {
        "udp": (f"sip:127.0.0.1:{kamailio.udp_port}", {}),
        "tcp": (f"sip:127.0.0.1:{kamailio.tcp_port};transport=tcp", {}),
        # sips: with a host name: SNI and hostname verification against the test CA.
        "tls": (f"sips:localhost:{kamailio.tls_port}", {"ca_file": str(kamailio.certs.ca)}),
    }[transport]
    cfg = _opts(target, **extra)
    obs = await options.probe(cfg, _deadline())
    assert obs.ok, obs.detail
    assert obs.values["status"] == 200
    assert obs.values["transport"] == transport.upper()
    assert str(obs.values["server"]).startswith("kamailio")
    assert 0 < obs.values["rtt_ms"] < 1000
    assert options.evaluate(obs, cfg).severity is Severity.OK


async def test_tls_without_the_ca_is_a_critical_tls_failure(kamailio: Kamailio) -> None:
    cfg = _opts(f"sips:localhost:{kamailio.tls_port}")
    obs = await options.probe(cfg, _deadline())
    assert obs.failure is FailureClass.TLS
    assert "certificate" in obs.detail
    assert options.evaluate(obs, cfg).severity is Severity.CRITICAL


async def test_probe_verbose_transcript_shows_the_transaction(kamailio: Kamailio) -> None:
    obs, lines = await options.probe_verbose(
        _opts(f"sip:127.0.0.1:{kamailio.udp_port}"), _deadline()
    )
    text = "\n".join(lines)
    assert obs.ok
    assert "OPTIONS sip:127.0.0.1" in text and "SIP/2.0 200 Keepalive" in text
    assert "received 200 after" in text


@pytest.mark.parametrize("user", ["alice", "bob"])  # qop=auth and no qop
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_register_succeeds_and_leaves_no_binding(
    kamailio: Kamailio, kamailio_sha256: Kamailio, user: str, algorithm: str
) -> None:
    k = kamailio if algorithm == "MD5" else kamailio_sha256
    cfg = _reg(k, user, f"SIP_PW_{user.upper()}")
    obs, lines = await register.probe_verbose(cfg, _deadline())
    assert obs.ok, obs.detail
    assert obs.values["algorithm"] == algorithm
    assert obs.values["statuses"] == (401, 200, 200)
    assert obs.values["binding_confirmed"] is True
    assert register.evaluate(obs, cfg).severity is Severity.OK
    assert user not in _aors(k)  # unregistered with Expires: 0
    password = USERS[user][0]
    assert password not in "\n".join(lines) and password not in repr(obs)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_register_over_streams(kamailio: Kamailio, transport: str) -> None:
    port = kamailio.tcp_port if transport == "tcp" else kamailio.tls_port
    scheme = "sip" if transport == "tcp" else "sips"
    target = f"{scheme}:localhost:{port};transport={transport}"
    obs = await register.probe(_reg(kamailio, "alice", "SIP_PW_ALICE", target), _deadline())
    assert obs.ok, obs.detail
    assert obs.values["transport"] == transport.upper()
    assert "alice" not in _aors(kamailio)


async def test_wrong_password_is_rejected_credentials(kamailio: Kamailio) -> None:
    cfg = _reg(kamailio, "alice", "SIP_PW_WRONG")
    obs, lines = await register.probe_verbose(cfg, _deadline())
    assert not obs.ok
    assert obs.failure is FailureClass.AUTH
    assert obs.values["stage"] == "rejected"
    assert register.evaluate(obs, cfg).severity is Severity.CRITICAL
    assert "not-the-password" not in "\n".join(lines)


async def test_unknown_account_is_rejected(kamailio: Kamailio) -> None:
    obs = await register.probe(_reg(kamailio, "mallory", "SIP_PW_WRONG"), _deadline())
    assert obs.failure is FailureClass.AUTH and obs.values["status"] == 403


async def test_maintenance_503_is_degraded_for_options_and_a_server_error_for_register(
    kamailio: Kamailio,
) -> None:
    kamailio.set_maintenance(True)
    try:
        cfg = _opts(f"sip:127.0.0.1:{kamailio.udp_port}")
        obs = await options.probe(cfg, _deadline())
        verdict = options.evaluate(obs, cfg)
        assert (obs.values["status"], verdict.severity) == (503, Severity.DEGRADED)
        assert "overloaded or in maintenance" in verdict.reason
        reg = await register.probe(_reg(kamailio, "alice", "SIP_PW_ALICE"), _deadline())
        assert reg.values["stage"] == "server_error"
        assert reg.failure is FailureClass.OVERLOADED
    finally:
        kamailio.set_maintenance(False)


def _registrations(
    k: Kamailio, expected: tuple[str, ...], secret_env: str = "KAM_RPC_PW", **kw: object
) -> registrations.Config:
    return registrations.Config(
        name="site",
        type="sip_registrations",
        target=k.rpc_url,
        source="kamailio",
        expected=expected,
        username=RPC_USER,
        password="${" + secret_env + "}",
        **kw,
    )


async def test_registrations_count_baresip_then_missing_after_it_stops(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    phones = {u: USERS[u][0] for u in ("phone101", "phone102")}
    expected = ("sip:phone101@127.0.0.1", "phone102", "phone103")
    cfg = _registrations(kamailio, expected)
    phone = Baresip(tmp_path / "baresip", kamailio.udp_port, phones)
    try:
        phone.start()
        phone.wait_registered()
        obs = await registrations.probe(cfg, _deadline())
        assert (obs.values["expected"], obs.values["registered"]) == (3, 2)
        assert obs.values["missing"] == ["phone103"]
        assert registrations.evaluate(obs, cfg).severity is Severity.DEGRADED
    finally:
        phone.stop()
    obs = await registrations.probe(cfg, _deadline())
    assert (obs.values["registered"], obs.values["missing"]) == (0, list(expected))
    verdict = registrations.evaluate(obs, cfg)
    assert (verdict.severity, verdict.failure) == (Severity.CRITICAL, FailureClass.MISSING)


async def test_registrations_with_wrong_rpc_credentials_is_auth(kamailio: Kamailio) -> None:
    cfg = _registrations(kamailio, ("phone101",), secret_env="KAM_RPC_BAD")
    obs = await registrations.probe(cfg, _deadline())
    assert obs.failure is FailureClass.AUTH
    assert "guess" not in obs.detail


async def test_stopped_kamailio_is_critical(tmp_path: Path) -> None:
    k = Kamailio(tmp_path / "k")
    k.start()
    k.stop()
    udp = _opts(f"sip:127.0.0.1:{k.udp_port}")
    tcp = _opts(f"sip:127.0.0.1:{k.tcp_port};transport=tcp")
    for cfg in (udp, tcp):
        obs = await options.probe(cfg, _deadline())
        assert obs.failure is FailureClass.REFUSED, obs
        assert options.evaluate(obs, cfg).severity is Severity.CRITICAL
    reg = await register.probe(_reg(k, "alice", "SIP_PW_ALICE"), _deadline())
    assert reg.values["stage"] == "no_answer" and reg.failure is FailureClass.REFUSED
    rpc = await registrations.probe(_registrations(k, ("phone101",)), _deadline())
    assert rpc.failure is FailureClass.REFUSED
    assert registrations.evaluate(rpc, _registrations(k, ("phone101",))).severity is (
        Severity.CRITICAL
    )
