"""A tiny SIP responder on 127.0.0.1 (UDP and TCP) for the demo config, tests and the bench.

It answers every request with one configurable final status; it is not a registrar.
`drop_ratio` silently drops that share of replies (seeded RNG, so a run can be repeated),
as a lossy network would: the soak test (tests/reliability/soak.py) uses it. Run on its own
with `python -m checks.sip.responder --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
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
        drop_ratio: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= drop_ratio <= 1.0:
            raise ValueError("drop_ratio must be between 0 and 1")
        self.host = host
        self.status = status
        self.reason = reason
        self.server = server
        self.silent = False
        self.received = 0  # requests seen (including retransmissions)
        self.drop_ratio = drop_ratio
        self.dropped = 0  # replies deliberately not sent (drop_ratio)
        self.answered = 0  # replies sent
        self._rng = random.Random(seed)  # own generator: a seed makes the drops repeatable
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
        # Drawn only for replies we would send, so a seed gives the same drops per request.
        if self.drop_ratio and self._rng.random() < self.drop_ratio:
            self.dropped += 1
            return None
        self.answered += 1
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


def _stats(r: SipResponder) -> str:
    return json.dumps({"received": r.received, "answered": r.answered, "dropped": r.dropped})


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    r = SipResponder(
        host.strip("[]"),
        int(port),
        None if args.no_tcp else int(port),
        status=args.status,
        drop_ratio=args.drop_ratio,
        seed=args.seed,
    )
    await r.start()
    # One JSON line with the bound ports, then (on SIGTERM/SIGINT) one with the counts.
    print(json.dumps({"udp_port": r.udp_port, "tcp_port": r.tcp_port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(_stats(r), flush=True))
    await stop.wait()
    await r.stop()
    print(_stats(r), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; print the bound ports first and the counts at exit (SIGUSR1: now)."""
    ap = argparse.ArgumentParser(description="nocd's SIP responder (127.0.0.1 by default)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port, UDP and TCP (0: any)")
    ap.add_argument("--no-tcp", action="store_true", help="UDP only")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--drop-ratio", type=float, default=0.0, help="share of replies dropped")
    ap.add_argument("--seed", type=int, default=None, help="seed of the drop RNG")
    args = ap.parse_args(argv)
    if not 0.0 <= args.drop_ratio <= 1.0:
        ap.error("--drop-ratio must be between 0 and 1")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
