"""sip_options against the built-in responder and scripted UDP peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import ValidationError

from checks.resources import close_all
from checks.sip import options
from checks.sip.message import SipMessage, build_response, parse
from checks.sip.responder import SipResponder
from checks.sip.transport import udp_endpoint
from nocd.model import FailureClass, Observation, Severity
from tests.peers import free_port


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def responder() -> AsyncIterator[SipResponder]:
    r = SipResponder()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def _cfg(target: str, **kw: object) -> options.Config:
    return options.Config.model_validate(
        {"name": "cli", "type": "sip_options", "target": target} | kw
    )


def _deadline(seconds: float = 2.0) -> float:
    return asyncio.get_running_loop().time() + seconds


class _Scripted(asyncio.DatagramProtocol):
    """A UDP peer whose replies to each request are produced by a function."""

    def __init__(self, reply: Callable[[bytes], list[bytes]]) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None
        self.seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        for out in self.reply(data):
            assert self.transport is not None
            self.transport.sendto(out, addr)


Scripted = Callable[[Callable[[bytes], list[bytes]]], Awaitable[int]]


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    """Start scripted UDP peers; returns their ports; closes them at teardown."""
    transports: list[asyncio.BaseTransport] = []

    async def start(reply: Callable[[bytes], list[bytes]]) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Scripted(reply), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return int(transport.get_extra_info("sockname")[1])

    yield start
    for t in transports:
        t.close()


def test_cli_config_needs_only_a_target() -> None:
    cfg = options.Config(name="cli", type="sip_options", target="sip:pbx.example.com")
    assert cfg.tls_verify is True and cfg.accept_any_response is False
    for bad in (
        "http://x",
        "sip:",
        "sip:host:99999",
        "sips:h;transport=udp",
        "sip:h;transport=sctp",
    ):
        with pytest.raises(ValidationError):
            _cfg(bad)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_200_from_the_responder(responder: SipResponder, transport: str) -> None:
    port = responder.udp_port if transport == "udp" else responder.tcp_port
    cfg = _cfg(f"sip:127.0.0.1:{port};transport={transport}")
    obs = await options.probe(cfg, _deadline())
    assert obs.ok and obs.values["status"] == 200
    assert obs.values["server"] == "nocd-responder"
    assert obs.values["address"] == f"{transport}:127.0.0.1:{port}"
    assert options.evaluate(obs, cfg).severity is Severity.OK


@pytest.mark.parametrize(
    ("status", "failure", "severity"),
    [
        (503, FailureClass.OVERLOADED, Severity.DEGRADED),
        (404, FailureClass.CONFIG, Severity.LOW),
        (403, FailureClass.CONFIG, Severity.LOW),
        (500, FailureClass.SERVER_ERROR, Severity.CRITICAL),
        (486, FailureClass.BAD_STATUS, Severity.CRITICAL),
    ],
)
async def test_status_judgement(
    responder: SipResponder, status: int, failure: FailureClass, severity: Severity
) -> None:
    responder.status = status
    cfg = _cfg(f"sip:127.0.0.1:{responder.udp_port}")
    obs = await options.probe(cfg, _deadline())
    verdict = options.evaluate(obs, cfg)
    assert (obs.values["status"], obs.failure, verdict.severity) == (status, failure, severity)


async def test_overrides_any_response_ok_status_and_per_failure_severity(
    responder: SipResponder,
) -> None:
    responder.status = 404
    target = f"sip:127.0.0.1:{responder.udp_port}"
    assert (await options.probe(_cfg(target, accept_any_response=True), _deadline())).ok
    assert (await options.probe(_cfg(target, ok_status=[404]), _deadline())).ok
    responder.status = 503
    cfg = _cfg(target, severity_by_failure={"overloaded": "critical"})
    obs = await options.probe(cfg, _deadline())
    assert options.evaluate(obs, cfg).severity is Severity.CRITICAL


def test_slow_answer_is_degraded() -> None:
    cfg = _cfg("sip:127.0.0.1", degraded_after="200ms")
    obs = Observation.success("200 OK", 0.35, status=200)
    verdict = options.evaluate(obs, cfg)
    assert (verdict.severity, verdict.failure) == (Severity.DEGRADED, FailureClass.SLOW)
    assert options.evaluate(Observation.success("200 OK", 0.1), cfg).ok


async def test_silence_times_out_after_t1_doubling_retransmissions(
    responder: SipResponder,
) -> None:
    responder.silent = True
    cfg = _cfg(f"sip:127.0.0.1:{responder.udp_port}", t1="50ms")
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await options.probe(cfg, start + 0.5)
    assert obs.failure is FailureClass.TIMEOUT
    assert 0.45 <= loop.time() - start < 0.7  # bounded by the deadline
    # Sends at 0, 50, 150 and 350 ms (RFC 3261 timer E doubling), then the deadline.
    assert responder.received == 4
    assert options.evaluate(obs, cfg).severity is Severity.CRITICAL


async def test_closed_udp_port_is_refused_via_icmp_not_a_timeout() -> None:
    port = free_port(socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await options.probe(_cfg(f"sip:127.0.0.1:{port}"), start + 3)
    assert obs.failure is FailureClass.REFUSED
    assert loop.time() - start < 1.0


async def test_icmp_error_fails_only_the_probe_it_belongs_to(responder: SipResponder) -> None:
    closed = free_port(socket.SOCK_DGRAM)
    good = _cfg(f"sip:127.0.0.1:{responder.udp_port}")
    bad = _cfg(f"sip:127.0.0.1:{closed}")
    results = await asyncio.gather(
        *(options.probe(good if i % 2 else bad, _deadline()) for i in range(40))
    )
    assert all(r.ok for r in results[1::2])
    assert all(r.failure is FailureClass.REFUSED for r in results[0::2])


async def test_tcp_connection_refused() -> None:
    obs = await options.probe(_cfg(f"sip:127.0.0.1:{free_port()};transport=tcp"), _deadline())
    assert obs.failure is FailureClass.REFUSED


async def test_provisional_then_final_and_strays_are_ignored(scripted: Scripted) -> None:
    def reply(data: bytes) -> list[bytes]:
        req = parse(data)
        stray = data.replace(b"branch=z9hG4bK", b"branch=z9hG4bKother")
        return [
            build_response(parse(stray), 200, "Not Yours"),
            b"\x00garbage without a branch",
            build_response(req, 100, "Trying"),
            build_response(req, 200, "OK"),
        ]

    port = await scripted(reply)
    obs = await options.probe(_cfg(f"sip:127.0.0.1:{port}"), _deadline())
    assert obs.ok and obs.values["reason"] == "OK"


async def test_garbage_reply_naming_our_branch_is_a_protocol_failure(scripted: Scripted) -> None:
    def reply(data: bytes) -> list[bytes]:
        branch = parse(data).top_via_branch() or ""
        return [f"SIP/2.0 2OO OK\r\nVia: SIP/2.0/UDP h;branch={branch}\r\n\r\n".encode()]

    port = await scripted(reply)
    cfg = _cfg(f"sip:127.0.0.1:{port}")
    obs = await options.probe(cfg, _deadline())
    assert obs.failure is FailureClass.PROTOCOL
    assert options.evaluate(obs, cfg).severity is Severity.CRITICAL


async def test_many_concurrent_probes_share_one_socket_and_match_by_branch(
    responder: SipResponder,
) -> None:
    cfg = _cfg(f"sip:127.0.0.1:{responder.udp_port}")
    results = await asyncio.gather(*(options.probe(cfg, _deadline()) for _ in range(300)))
    assert all(r.ok for r in results)
    ep = udp_endpoint(socket.AF_INET)
    assert ep.stray == 0 and not ep._pending
    await close_all()
    assert ep.sock.fileno() == -1  # closed with the loop's shared resources


async def test_probe_verbose_shows_request_response_and_timing(responder: SipResponder) -> None:
    obs, lines = await options.probe_verbose(
        _cfg(f"sip:127.0.0.1:{responder.udp_port}"), _deadline()
    )
    text = "\n".join(lines)
    assert obs.ok
    assert "→ udp:127.0.0.1" in text and "OPTIONS sip:127.0.0.1" in text
    assert "received 200 after" in text and "SIP/2.0 200 OK" in text


async def test_responder_answers_with_received_and_rport() -> None:
    r = SipResponder(tcp_port=None)
    await r.start()
    seen: list[SipMessage] = []
    try:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                fut.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
        local = transport.get_extra_info("sockname")[1]
        transport.sendto(
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKq;rport"
            b"\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c\r\n"
            b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            ("127.0.0.1", r.udp_port),
        )
        seen.append(parse(await asyncio.wait_for(fut, 2)))
        transport.close()
    finally:
        await r.stop()
    via = seen[0].header("via") or ""
    assert f"rport={local}" in via and "received=127.0.0.1" in via
    assert seen[0].cseq() == (1, "OPTIONS")
