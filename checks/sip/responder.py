"""A tiny SIP responder on 127.0.0.1 (UDP and TCP) for the demo config, tests and the bench.

It answers every request with one configurable final status; it is not a registrar.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

from checks.sip.message import (
    SipMessage,
    SipParseError,
    build_response,
    new_token,
    parse,
)
from checks.sip.transport import StreamChannel

REASONS = {
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    486: "Busy Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
}


class SipResponder:
    """Answer SIP requests with `status` on UDP and TCP; `silent` drops them instead."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        udp_port: int | None = 0,
        tcp_port: int | None = 0,
        status: int = 200,
        reason: str | None = None,
        server: str = "nocd-responder",
    ) -> None:
        self.host = host
        self.status = status
        self.reason = reason
        self.server = server
        self.silent = False
        self.received = 0  # requests seen (including retransmissions)
        self._want_udp, self._want_tcp = udp_port, tcp_port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self.udp_port: int | None = None
        self.tcp_port: int | None = None

    async def start(self) -> None:
        """Bind the sockets; the bound ports are then in udp_port / tcp_port."""
        loop = asyncio.get_running_loop()
        if self._want_udp is not None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self._want_udp)
            )
            self._udp = transport
            self.udp_port = int(transport.get_extra_info("sockname")[1])
        if self._want_tcp is not None:
            self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self._want_tcp)
            self.tcp_port = int(self._tcp.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the sockets and connections."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
            self._tcp = None

    def answer(self, request: SipMessage, source: tuple[str, int]) -> bytes | None:
        """The response to `request`, or None when silent or it is not worth answering."""
        self.received += 1
        if self.silent or request.method in (None, "ACK"):
            return None
        reason = self.reason or REASONS.get(self.status, "Unknown")
        extra = [("Server", self.server)]
        if request.method == "OPTIONS":
            extra.append(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"))
        return build_response(
            request, self.status, reason, to_tag=new_token(), extra=extra, received=source
        )

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = StreamChannel(reader, writer, "TCP")
        peer = writer.get_extra_info("peername")
        try:
            while True:
                request = await channel.read_message()
                reply = self.answer(request, (str(peer[0]), int(peer[1])))
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (OSError, SipParseError, asyncio.IncompleteReadError, EOFError):
            pass
        finally:
            await channel.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipResponder) -> None:
        self._owner = owner
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse(data)
        except SipParseError:
            return  # garbage: nothing sensible to answer
        reply = self._owner.answer(request, addr)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP from a client that went away; keep serving
