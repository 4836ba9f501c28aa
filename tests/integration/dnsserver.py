"""A tiny authoritative DNS server on 127.0.0.1 (UDP) for tests, built on dnspython."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

# (name, type) → answers in zone-file text; names not listed get NXDOMAIN.
ZONE: dict[tuple[str, str], list[str]] = {
    ("pbx.example.com.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("pbx.example.com.", "AAAA"): ["2001:db8::10"],
    ("_sip._udp.example.com.", "SRV"): [
        "10 60 5060 sip1.example.com.",
        "20 40 5060 sip2.example.com.",
    ],
    ("example.com.", "NAPTR"): [
        '10 100 "S" "SIP+D2U" "" _sip._udp.example.com.',
        '20 100 "S" "SIPS+D2T" "" _sips._tcp.example.com.',
    ],
}
SERVFAIL = "broken.example.com."
SILENT = "silent.example.com."


class Server(asyncio.DatagramProtocol):
    """Answers from ZONE; SERVFAIL and silence on the two special names."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        q = query.question[0]
        name, rdtype = q.name.to_text(), dns.rdatatype.to_text(q.rdtype)
        if name == SILENT:
            return
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        if name == SERVFAIL:
            resp.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rdtype) in ZONE:
            resp.answer.append(
                dns.rrset.from_text_list(name, 300, "IN", rdtype, ZONE[name, rdtype])
            )
        elif not any(n == name for n, _ in ZONE):
            resp.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(resp.to_wire(), addr)


async def start() -> tuple[asyncio.DatagramTransport, Server, int]:
    """Start the server on an ephemeral port; returns (transport, server, port)."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
    return transport, server, transport.get_extra_info("sockname")[1]
