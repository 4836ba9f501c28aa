"""The v2c fast path's socket: replies matched by request-id, source and community; resends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c

from checks import snmp
from checks.resources import close_all
from checks.snmp_v2c import sockets
from nocd.model import FailureClass
from tests.integration import snmpd as agent

COMMUNITY = "c0mmunity-example"
OID = "1.3.6.1.4.1.8072.9999.1.0"


@pytest.fixture(autouse=True)
async def _close_resources(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    monkeypatch.setenv("T_V2C_COMMUNITY", COMMUNITY)
    monkeypatch.setenv("T_SNMP_COMMUNITY", agent.COMMUNITY)
    yield
    await close_all()


Answer = Callable[[int, bytes], list[tuple[bytes, bool]]]  # → (datagram, from another port?)


def reply(request_id: int, value: Any, community: str = COMMUNITY, status: int = 0) -> bytes:
    """An agent's Response-PDU to `request_id`, built and encoded by pysnmp."""
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_error_status(pdu, status)
    v2c.apiPDU.set_error_index(pdu, 1 if status else 0)
    v2c.apiPDU.set_varbinds(pdu, [(OID, value)])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


class FakeAgent(asyncio.DatagramProtocol):
    """A scripted v2c agent on 127.0.0.1: `answer` says what to send back to each request."""

    def __init__(self, answer: Answer, other: asyncio.DatagramTransport) -> None:
        self.answer = answer
        self.other = other  # a second socket, for replies from the wrong port
        self.requests = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg, _ = decoder.decode(data, asn1Spec=v2c.Message())
        request_id = int(v2c.apiPDU.get_request_id(v2c.apiMessage.get_pdu(msg)))
        self.requests += 1
        for datagram, elsewhere in self.answer(self.requests, request_id.to_bytes(4, "big")):
            (self.other if elsewhere else self.transport).sendto(datagram, addr)


@pytest.fixture
async def fake() -> AsyncIterator[Callable[[Answer], Any]]:
    loop = asyncio.get_running_loop()
    transports: list[Any] = []

    async def start(answer: Answer, host: str = "127.0.0.1") -> tuple[FakeAgent, str]:
        other, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(host, 0)
        )
        transport, proto = await loop.create_datagram_endpoint(
            lambda: FakeAgent(answer, other), local_addr=(host, 0)
        )
        transports.extend((other, transport))
        port = transport.get_extra_info("sockname")[1]
        return proto, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    yield start
    for t in transports:
        t.close()


def config(target: str, **extra: Any) -> snmp.Config:
    raw: dict[str, Any] = {
        "name": "ups1",
        "type": "snmp",
        "target": target,
        "timeout": "1s",
        "community": "${T_V2C_COMMUNITY}",
        "detect_restart": False,
        "oids": [{"oid": OID, "name": "temperature"}],
    }
    return snmp.Config.model_validate(raw | extra)


async def probe(cfg: snmp.Config) -> tuple[Any, float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await snmp.probe(cfg, start + cfg.timeout)
    return obs, loop.time() - start


async def test_forged_and_broken_replies_are_ignored(fake: Any) -> None:
    def answer(_: int, rid: bytes) -> list[tuple[bytes, bool]]:
        n = int.from_bytes(rid, "big")
        good = reply(n, rfc1902.Integer(42))
        return [
            (reply(n ^ 1, rfc1902.Integer(1)), False),  # another request's id
            (reply(n, rfc1902.Integer(2), community="wrong-community"), False),
            (reply(n, rfc1902.Integer(3)), True),  # from a port the GET did not go to
            (good[:-3], False),  # truncated
            (b"\x00garbage", False),
            (good, False),
        ]

    _, target = await fake(answer)
    obs, _ = await probe(config(target))
    assert obs.ok, obs.detail
    assert obs.values["oids"] == {"temperature": 42}
    assert sockets().clients[socket.AF_INET].ignored == 5


async def test_a_lost_request_is_resent_within_the_deadline(fake: Any) -> None:
    def answer(count: int, rid: bytes) -> list[tuple[bytes, bool]]:
        return (
            [] if count == 1 else [(reply(int.from_bytes(rid, "big"), rfc1902.Gauge32(7)), False)]
        )

    agent_, target = await fake(answer)
    obs, took = await probe(config(target, snmp_retries=1))
    assert obs.ok, obs.detail
    assert obs.values["oids"] == {"temperature": 7}
    assert agent_.requests == 2
    assert 0.4 < took < 1.0  # the resend went out at half the timeout


async def test_silence_is_a_timeout_at_the_deadline(fake: Any) -> None:
    agent_, target = await fake(lambda _c, _r: [])
    obs, took = await probe(config(target, snmp_retries=2))
    assert obs.failure is FailureClass.TIMEOUT
    assert "wrong community" in obs.detail
    assert COMMUNITY not in obs.detail
    assert agent_.requests == 3
    assert 0.95 < took < 1.2


async def test_only_malformed_replies_is_a_protocol_failure(fake: Any) -> None:
    _, target = await fake(
        lambda _c, rid: [(reply(int.from_bytes(rid, "big"), v2c.null)[:-1], False)]
    )
    obs, took = await probe(config(target))
    assert obs.failure is FailureClass.PROTOCOL
    assert obs.detail.startswith("malformed SNMP reply")
    assert took < 1.2


async def test_error_status_is_bad_status(fake: Any) -> None:
    _, target = await fake(
        lambda _c, rid: [(reply(int.from_bytes(rid, "big"), v2c.null, status=1), False)]
    )
    obs, _ = await probe(config(target))
    assert obs.failure is FailureClass.BAD_STATUS
    assert obs.detail == f"agent returned tooBig for {OID}"


async def test_ipv6_target_uses_its_own_socket(fake: Any) -> None:
    try:
        _, target = await fake(
            lambda _c, rid: [(reply(int.from_bytes(rid, "big"), rfc1902.Integer(5)), False)],
            "::1",
        )
    except OSError as exc:  # no IPv6 loopback in this sandbox
        pytest.skip(f"cannot bind [::1]: {exc}")
    obs, _ = await probe(config(target))
    assert obs.ok, obs.detail
    assert obs.values["oids"] == {"temperature": 5}
    assert set(sockets().clients) == {socket.AF_INET6}


async def test_unresolvable_target_is_dns() -> None:
    obs, _ = await probe(config("nonexistent.invalid"))
    assert obs.failure is FailureClass.DNS
    assert obs.detail.startswith("cannot resolve SNMP target")


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[agent.Snmpd]:
    d = agent.Snmpd(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.peer
async def test_many_concurrent_gets_share_one_socket(snmpd: agent.Snmpd) -> None:
    cfgs = [
        config(
            snmpd.address,
            name=f"ups{i}",
            community="${T_SNMP_COMMUNITY}",
            detect_restart=True,
            oids=[{"oid": agent.IF_OPER_STATUS_1, "name": "if1"}],
            timeout="3s",
        )
        for i in range(100)
    ]
    results = await asyncio.gather(*(probe(c) for c in cfgs))
    assert all(obs.ok for obs, _ in results), [obs.detail for obs, _ in results if not obs.ok]
    assert {obs.values["oids"]["if1"] for obs, _ in results} == {1}
    assert len(sockets().clients) == 1
    assert not sockets().clients[socket.AF_INET].pending  # nothing left behind


async def test_start_is_the_same_get_without_a_task(fake: Any) -> None:
    _, target = await fake(
        lambda _c, rid: [(reply(int.from_bytes(rid, "big"), rfc1902.Counter32(9)), False)]
    )
    cfg = config(target)
    loop = asyncio.get_running_loop()
    assert not snmp.start(cfg, loop.time() + 1, lambda _obs: None)  # no socket open yet
    first, _ = await probe(cfg)  # the coroutine path opens it
    got: asyncio.Future[Any] = loop.create_future()
    calls: list[Any] = []

    def done(obs: Any) -> None:
        calls.append(obs)
        got.set_result(obs)

    assert snmp.start(cfg, loop.time() + 1, done)
    assert calls == []  # done() never runs inside start()
    obs = await asyncio.wait_for(got, 2)
    await asyncio.sleep(0.05)
    assert len(calls) == 1
    assert obs.ok, obs.detail
    assert obs.values == first.values == {"oids": {"temperature": 9}, "text": {}}


async def test_start_ends_silence_at_the_deadline(fake: Any) -> None:
    agent_, target = await fake(
        lambda count, rid: (
            [] if count > 1 else [(reply(int.from_bytes(rid, "big"), rfc1902.Integer(1)), False)]
        )
    )
    cfg = config(target, snmp_retries=1)
    await probe(cfg)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[Any] = loop.create_future()
    began = loop.time()
    assert snmp.start(cfg, began + 1, got.set_result)
    obs = await asyncio.wait_for(got, 2)
    assert obs.failure is FailureClass.TIMEOUT
    assert 0.95 < loop.time() - began < 1.2
    assert agent_.requests == 3  # the probe's GET, then this one's first try and its resend
    assert not sockets().clients[socket.AF_INET].pending


def test_start_declines_what_needs_a_coroutine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_V3_KEY", "passphrase-1234")
    v3 = config(
        "127.0.0.1:161",
        version="3",
        community=None,
        v3={"user": "u", "auth_key": "${T_V3_KEY}", "priv_key": "${T_V3_KEY}"},
    )
    assert not snmp.start(v3, 0.0, lambda _obs: None)
    assert not snmp.start(config("ups1.example.com"), 0.0, lambda _obs: None)
