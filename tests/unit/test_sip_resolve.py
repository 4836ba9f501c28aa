"""SIP URIs and RFC 3263 server location against a small authoritative DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rrset
import pytest

from checks.sip.resolve import ResolveError, parse_uri, resolve

ZONE = {
    ("_sip._udp.pbx.example.com.", "SRV"): ["20 10 5080 backup.example.com.", "10 5 5070 a.example.com."],
    ("_sips._tcp.pbx.example.com.", "SRV"): ["10 0 5071 a.example.com."],
    ("_sip._tcp.tcponly.example.com.", "SRV"): ["10 0 5090 a.example.com."],
    ("a.example.com.", "A"): ["127.0.0.2"],
    ("backup.example.com.", "A"): ["127.0.0.3"],
    ("pbx.example.com.", "A"): ["127.0.0.4"],
    ("tcponly.example.com.", "A"): ["127.0.0.5"],
    ("v6.example.com.", "AAAA"): ["::1"],
}  # fmt: skip


class _Dns(asyncio.DatagramProtocol):
    """Answers from ZONE; NXDOMAIN for unknown names, NOERROR/empty for other types."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        q = query.question[0]
        name, rdtype = q.name.to_text(), dns.rdatatype.to_text(q.rdtype)
        records = ZONE.get((name, rdtype))
        if records:
            reply.answer.append(dns.rrset.from_text_list(name, 60, "IN", rdtype, records))
        elif not any(n == name for n, _ in ZONE):
            reply.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def resolver() -> AsyncIterator[dns.asyncresolver.Resolver]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Dns, local_addr=("127.0.0.1", 0))
    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = transport.get_extra_info("sockname")[1]
    try:
        yield res
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("sip:pbx.example.com", ("sip", None, "pbx.example.com", None, None)),
        ("sips:alice@pbx.example.com:5061", ("sips", "alice", "pbx.example.com", 5061, None)),
        ("sip:host:5080;transport=tcp", ("sip", None, "host", 5080, "TCP")),
        ("SIP:[2001:db8::1]:5060;lr", ("sip", None, "2001:db8::1", 5060, None)),
        ("sip:127.0.0.1;transport=TLS?subject=x", ("sip", None, "127.0.0.1", None, "TLS")),
    ],
)
def test_parse_uri(text: str, parts: tuple[object, ...]) -> None:
    uri = parse_uri(text)
    assert (uri.scheme, uri.user, uri.host, uri.port, uri.transport) == parts


async def test_literal_addresses_need_no_dns() -> None:
    dest = await resolve(parse_uri("sips:[::1]"), 1.0)
    assert (dest.transport, dest.ip, dest.port, dest.family, dest.how) == (
        "TLS", "::1", 5061, socket.AF_INET6, "literal"
    )  # fmt: skip
    assert str(dest) == "tls:[::1]:5061"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # SRV by priority: 10 before 20 (RFC 2782).
        ("sip:pbx.example.com", "udp:127.0.0.2:5070 srv"),
        ("sips:pbx.example.com", "tls:127.0.0.2:5071 srv"),
        # Explicit transport: only that SRV; none → A record with the default port.
        ("sip:pbx.example.com;transport=tcp", "tcp:127.0.0.4:5060 a"),
        # No UDP SRV: the next transport in our preference order that has one (§4.1).
        ("sip:tcponly.example.com", "tcp:127.0.0.2:5090 srv"),
        # An explicit port skips SRV (§4.2).
        ("sip:pbx.example.com:5099", "udp:127.0.0.4:5099 a"),
        ("sip:v6.example.com", "udp:[::1]:5060 a"),
    ],
)
async def test_rfc3263_location(
    resolver: dns.asyncresolver.Resolver, uri: str, expected: str
) -> None:
    dest = await resolve(parse_uri(uri), 2.0, resolver)
    assert f"{dest} {dest.how}" == expected
    assert dest.server_name == parse_uri(uri).host  # TLS verifies the URI's host (RFC 5922)


async def test_unknown_name_is_a_resolve_error(resolver: dns.asyncresolver.Resolver) -> None:
    with pytest.raises(ResolveError):
        await resolve(parse_uri("sip:nowhere.example.com"), 2.0, resolver)


async def test_silent_dns_server_is_a_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = ["127.0.0.1"]
        res.port = sink.getsockname()[1]
        with pytest.raises(TimeoutError):
            await resolve(parse_uri("sip:pbx.example.com"), 0.3, res)
