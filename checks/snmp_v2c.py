"""SNMP v2c GETs over one shared UDP socket per address family: request-id matching, resends."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from checks.resources import shared
from checks.snmp_ber import (
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    MalformedReply,
    Reply,
    Template,
    parse,
    peek,
)

# pysnmp's hlapi engine spends ~3.5 ms of CPU per GET (MIB-aware varbind objects, full BER
# decode, its dispatcher); a GET of a few OIDs needs only a fraction of that. v3 stays on
# the hlapi: USM (discovery, key localisation, timeliness windows) is not redone here.

RECV_BUFFER = 1 << 20  # a burst of replies to concurrent GETs must not overflow the socket


class NoValidReply(Exception):
    """Only malformed datagrams came back from the agent before the deadline."""


Finished = Callable[[Reply | BaseException], None]


@dataclass(slots=True)
class _Pending:
    """One GET in flight: where it went, what it asked, its timer, and whom to tell."""

    addr: tuple[str, int]
    tpl: Template
    packet: bytes
    finished: Finished
    first: float  # loop time of the first send
    step: float  # seconds between resends
    deadline: float
    attempts: int
    sent: int = 0
    timer: asyncio.TimerHandle | None = None
    malformed: str = ""  # why the last matching datagram was rejected


@dataclass
class V2cClient(asyncio.DatagramProtocol):
    """One UDP socket's GETs in flight, keyed by request-id; replies are matched to them."""

    pending: dict[int, _Pending] = field(default_factory=dict)
    transport: asyncio.DatagramTransport | None = None
    ignored: int = 0  # datagrams matching no GET in flight (late, forged or garbage)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this once the socket is bound)."""
        # asyncio's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Hand a well-formed reply to its GET; count and drop anything else."""
        try:
            request_id, community, rest, problem = peek(data)
        except MalformedReply:
            self.ignored += 1
            return
        entry = self.pending.get(request_id)
        # A reply counts only from the address asked, with the community sent: anything
        # else is a late reply to an abandoned GET, or forged.
        if entry is None or tuple(addr[:2]) != entry.addr or community != entry.tpl.community:
            self.ignored += 1
            return
        try:
            if problem:
                raise MalformedReply(problem)
            reply = parse(data, rest, entry.tpl)
        except MalformedReply as exc:
            entry.malformed = str(exc)  # keep waiting: a resend may bring a good one
            self.ignored += 1
            return
        self._end(request_id, reply)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors on the shared socket belong to no GET in particular: ignore them."""

    def start(
        self,
        tpl: Template,
        addr: tuple[str, int],
        deadline: float,
        attempts: int,
        finished: Finished,
    ) -> int:
        """Send a GET; `finished(reply or exception)` follows from the loop, never from here.

        Silence is resent (same request-id, so a slow reply to an earlier try still counts)
        evenly until `deadline`, which ends the GET with TimeoutError, or NoValidReply when
        only malformed replies came. Returns the request-id (for `abandon`).
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        request_id = self._new_id()
        now = loop.time()
        entry = _Pending(
            addr,
            tpl,
            tpl.with_request_id(request_id),
            finished,
            now,
            max(0.0, deadline - now) / attempts,
            deadline,
            attempts,
        )
        self.pending[request_id] = entry
        self._send(request_id, entry, loop)
        return request_id

    def abandon(self, request_id: int) -> None:
        """Forget a GET without telling anyone (its waiter was cancelled)."""
        entry = self.pending.pop(request_id, None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()

    async def get(
        self, tpl: Template, addr: tuple[str, int], deadline: float, attempts: int
    ) -> Reply:
        """start() as a coroutine: the reply, or TimeoutError / NoValidReply raised."""
        waiter: asyncio.Future[Reply | BaseException] = asyncio.get_running_loop().create_future()

        def finished(result: Reply | BaseException) -> None:
            if not waiter.done():  # cancelled, with the reply already on its way
                waiter.set_result(result)

        request_id = self.start(tpl, addr, deadline, attempts, finished)
        try:
            result = await waiter
        finally:
            self.abandon(request_id)  # a no-op unless cancelled
        if isinstance(result, BaseException):
            raise result
        return result

    def _send(self, request_id: int, entry: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        assert self.transport is not None
        self.transport.sendto(entry.packet, entry.addr)
        entry.sent += 1
        last = entry.sent >= entry.attempts
        when = entry.deadline if last else entry.first + entry.step * entry.sent
        entry.timer = loop.call_at(when, self._expire, request_id)

    def _expire(self, request_id: int) -> None:
        entry = self.pending.get(request_id)
        if entry is None:
            return
        if entry.sent < entry.attempts:
            self._send(request_id, entry, asyncio.get_running_loop())
        elif entry.malformed:
            self._end(request_id, NoValidReply(entry.malformed))
        else:
            self._end(request_id, TimeoutError())

    def _end(self, request_id: int, result: Reply | BaseException) -> None:
        entry = self.pending.pop(request_id)
        if entry.timer is not None:
            entry.timer.cancel()
        entry.finished(result)

    def _new_id(self) -> int:
        # Unpredictable ids make blind forgery from off-path hosts impractical.
        while True:
            n = int.from_bytes(os.urandom(4), "big") & REQUEST_ID_MAX
            if n >= REQUEST_ID_MIN and n not in self.pending:
                return n


class _Sockets:
    """The loop's v2c sockets, one per address family, opened on first use."""

    def __init__(self) -> None:
        self.clients: dict[int, V2cClient] = {}
        self.lock = asyncio.Lock()

    async def client(self, family: int) -> V2cClient:
        """The family's client, binding its socket the first time."""
        found = self.clients.get(family)
        if found is not None:
            return found
        async with self.lock:
            if family not in self.clients:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
                    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
                    sock.setblocking(False)
                except OSError:
                    sock.close()
                    raise
                _, proto = await asyncio.get_running_loop().create_datagram_endpoint(
                    V2cClient, sock=sock
                )
                self.clients[family] = proto
            return self.clients[family]

    async def close(self) -> None:
        """Close every socket; GETs still in flight end by their own deadlines."""
        for proto in self.clients.values():
            if proto.transport is not None:
                proto.transport.close()
        self.clients.clear()


def sockets() -> _Sockets:
    """The running loop's v2c sockets."""

    async def _close(s: _Sockets) -> None:
        await s.close()

    return shared("snmp.v2c.sockets", _Sockets, _close)


@functools.lru_cache(maxsize=4096)
def numeric(host: str, port: int) -> tuple[int, tuple[str, int]] | None:
    """(address family, (address, port)) of a literal IP target; None for a name."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None
    return family, (str(infos[0][4][0]), int(infos[0][4][1]))


async def resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
    """(address family, (address, port)) of a target; IPv6 only for literal v6 addresses."""
    # As pysnmp's UdpTransportTarget did: names resolve over IPv4 (looked up per probe, so a
    # changed DNS record is followed); literals need no lookup.
    found = numeric(host, port)
    if found is not None:
        return found
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    if not infos:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    sockaddr = infos[0][4]
    return socket.AF_INET, (str(sockaddr[0]), int(sockaddr[1]))
