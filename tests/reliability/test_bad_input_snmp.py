"""The `snmp` check against a hostile agent on 127.0.0.1 (issue #10, malformed SNMP responses).

A UDP server decodes each GET with pysnmp's own codec and answers with a reply broken in one
way: garbage, truncated BER, another request-id, a 64 KB datagram, another community or
version, a reply to an OID not asked, nonsense error fields. The probe must come back with an
Observation (no exception) within its timeout, failed as TIMEOUT (nothing acceptable came) or
PROTOCOL (only broken replies came), and a good reply that follows garbage must still count.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from checks import snmp
from checks.resources import close_all
from nocd.model import FailureClass, Observation

COMMUNITY = "hostile-agent-community"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
Mutator = Callable[[bytes], list[bytes]]


def _v2c() -> Any:
    from pysnmp.proto import api

    return api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


def good_reply(request: bytes, *, version: int = 1, community: str = COMMUNITY) -> bytes:
    """A correct response to a v2c GET: sysUpTime and sysDescr values for the OIDs asked."""
    from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]

    p = _v2c()
    msg, _ = decoder.decode(request, asn1Spec=p.Message())
    pdu = p.apiMessage.get_pdu(msg)
    rsp = p.apiMessage.get_response(msg)
    rpdu = p.apiMessage.get_pdu(rsp)
    binds = []
    for oid, _val in p.apiPDU.get_varbinds(pdu):
        value = p.TimeTicks(4242) if str(oid) == snmp.SYS_UPTIME else p.OctetString("hostile")
        binds.append((oid, value))
    p.apiPDU.set_varbinds(rpdu, binds)
    rsp.setComponentByPosition(0, version)
    p.apiMessage.set_community(rsp, community)
    return bytes(encoder.encode(rsp))


def _request_id(request: bytes) -> int:
    from pyasn1.codec.ber import decoder

    p = _v2c()
    msg, _ = decoder.decode(request, asn1Spec=p.Message())
    return int(p.apiPDU.get_request_id(p.apiMessage.get_pdu(msg)))


def _with(request: bytes, edit: Callable[[Any, Any], None]) -> bytes:
    """A good reply with its message/PDU edited by `edit(msg, pdu)`."""
    from pyasn1.codec.ber import decoder, encoder

    p = _v2c()
    rsp, _ = decoder.decode(good_reply(request), asn1Spec=p.Message())
    edit(rsp, p.apiMessage.get_pdu(rsp))
    return bytes(encoder.encode(rsp))


def _other_id(request: bytes) -> bytes:
    rid = _request_id(request)
    return _with(request, lambda _m, pdu: _v2c().apiPDU.set_request_id(pdu, rid ^ 0x5A5A))


def _other_oid(request: bytes) -> bytes:
    p = _v2c()
    return _with(
        request,
        lambda _m, pdu: p.apiPDU.set_varbinds(pdu, [("1.3.6.1.4.1.9999.1.0", p.Integer(1))]),
    )


def _error_fields(request: bytes) -> bytes:
    p = _v2c()

    def edit(_m: Any, pdu: Any) -> None:
        p.apiPDU.set_error_status(pdu, 18)  # inconsistentName: a real status, odd for a GET
        p.apiPDU.set_error_index(pdu, 99)  # pointing past the varbinds

    return _with(request, edit)


BROKEN: dict[str, Mutator] = {
    "garbage": lambda req: [os.urandom(64)],
    "empty datagram": lambda req: [b""],
    "truncated BER": lambda req: [good_reply(req)[: len(good_reply(req)) // 2]],
    "every truncation": lambda req: [good_reply(req)[:n] for n in range(1, len(good_reply(req)))],
    "length says more": lambda req: [
        good_reply(req)[:1] + b"\x84\x7f\xff\xff\xff" + good_reply(req)[2:]
    ],
    "wrong request-id": lambda req: [_other_id(req)],
    "64 KB datagram": lambda req: [good_reply(req) + os.urandom(65_000)],
    "64 KB of garbage": lambda req: [os.urandom(65_507)],
    "wrong community": lambda req: [good_reply(req, community="someone-else")],
    "v1 reply to v2c": lambda req: [good_reply(req, version=0)],
    "v3 version number": lambda req: [good_reply(req, version=3)],
    "the request echoed": lambda req: [req],
}


class Agent(asyncio.DatagramProtocol):
    """Answers every datagram with what the current mutator makes of a good reply."""

    def __init__(self) -> None:
        self.mutate: Mutator = lambda req: [good_reply(req)]
        self.then_good = False
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.requests += 1
        assert self.transport is not None
        replies = self.mutate(data)
        if self.then_good:
            replies.append(good_reply(data))
        for reply in replies:
            self.transport.sendto(reply, addr)


@pytest.fixture
async def agent() -> AsyncIterator[tuple[Agent, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Agent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        yield proto, port
    finally:
        await close_all()
        transport.close()


async def probe(
    port: int, monkeypatch: pytest.MonkeyPatch, timeout: float = 1.0
) -> tuple[Observation, float]:
    monkeypatch.setenv("HOSTILE_COMMUNITY", COMMUNITY)
    cfg = snmp.Config.model_validate(
        {
            "name": "ups",
            "type": "snmp",
            "target": f"127.0.0.1:{port}",
            "community": "${HOSTILE_COMMUNITY}",
            "oids": [{"oid": SYS_DESCR, "name": "descr"}],
            "timeout": timeout,
            "interval": 10,
            "snmp_retries": 1,
        }
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await snmp.probe(cfg, start + timeout)
    return obs, loop.time() - start


async def test_the_agent_answers_correctly_when_not_hostile(
    agent: tuple[Agent, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness itself: without mutation the check succeeds (so failures below mean it)."""
    obs, _ = await probe(agent[1], monkeypatch)
    assert obs.ok, obs.detail
    assert obs.values["text"] == {"descr": "hostile"}
    assert obs.values["sys_uptime"] == 42.42


@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_broken_replies_are_a_clean_failure(
    agent: tuple[Agent, int], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    proto, port = agent
    proto.mutate = BROKEN[case]
    obs, took = await probe(port, monkeypatch)
    assert not obs.ok, f"{case}: accepted: {obs.detail}"
    assert obs.failure in (FailureClass.TIMEOUT, FailureClass.PROTOCOL), (case, obs)
    assert took < 1.5, took
    assert proto.requests >= 1


@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_a_good_reply_after_broken_ones_still_counts(
    agent: tuple[Agent, int], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    proto, port = agent
    proto.mutate = BROKEN[case]
    proto.then_good = True
    obs, _ = await probe(port, monkeypatch)
    assert obs.ok, f"{case}: {obs.failure} {obs.detail}"


async def test_a_reply_about_another_oid_is_not_taken_for_ours(
    agent: tuple[Agent, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    proto, port = agent
    proto.mutate = lambda req: [_other_oid(req)]
    obs, took = await probe(port, monkeypatch)
    assert not obs.ok, obs.detail
    assert took < 1.5


async def test_nonsense_error_fields_fail_cleanly(
    agent: tuple[Agent, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    proto, port = agent
    proto.mutate = lambda req: [_error_fields(req)]
    obs, _ = await probe(port, monkeypatch)
    assert not obs.ok
    assert obs.failure in (FailureClass.BAD_STATUS, FailureClass.PROTOCOL), obs


V3_BROKEN = ["garbage", "empty datagram", "64 KB of garbage", "the request echoed"]


@pytest.mark.parametrize("case", V3_BROKEN)
async def test_v3_broken_replies_are_a_clean_failure(
    agent: tuple[Agent, int], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """v3 goes through pysnmp's engine (discovery first): garbage must end the same way."""
    proto, port = agent
    proto.mutate = BROKEN[case]
    monkeypatch.setenv("HOSTILE_AUTH", "hostile-auth-0123")
    monkeypatch.setenv("HOSTILE_PRIV", "hostile-priv-4567")
    cfg = snmp.Config.model_validate(
        {
            "name": "ups-v3",
            "type": "snmp",
            "target": f"127.0.0.1:{port}",
            "version": "3",
            "v3": {
                "user": "nocd",
                "auth_key": "${HOSTILE_AUTH}",
                "priv_key": "${HOSTILE_PRIV}",
            },
            "oids": [{"oid": SYS_DESCR, "name": "descr"}],
            "timeout": 1.0,
            "interval": 10,
        }
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await snmp.probe(cfg, start + 1.0)
    assert not obs.ok, obs.detail
    assert obs.failure in (FailureClass.TIMEOUT, FailureClass.PROTOCOL, FailureClass.AUTH), obs
    assert loop.time() - start < 1.5
    assert proto.requests >= 1
