"""SIP transports: one shared UDP socket per address family, TCP/TLS connections per probe.

UDP transactions are matched by top Via branch and retransmitted per RFC 3261 §17.1.2
(timer E doubling from T1 up to T2) until a final response or the probe's deadline.
ICMP errors are read from the socket's error queue (IP_RECVERR) and fail exactly the
transactions sent to the unreachable address.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

import structlog

from checks.resources import shared
from checks.sip.message import MAX_MESSAGE, SipMessage, SipParseError, parse
from checks.sip.resolve import Destination

T1 = 0.5
T2 = 4.0
GRID = 0.01  # s; retransmissions fire on this grid so a slot's transactions share a timer
_RECV_BATCH = 512  # datagrams read per readiness callback before yielding to the loop
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
log = structlog.get_logger(__name__)
_CONTENT_LENGTH = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?\n", re.I)


class Channel(Protocol):
    """One way to reach one SIP server: send a request, get its final response."""

    transport: str  # UDP | TCP | TLS
    local: tuple[str, int]  # our address as the server should see it (Via/Contact)

    async def transact(
        self, data: bytes, branch: str, deadline: float
    ) -> tuple[SipMessage, float, int]:
        """Send `data`; return (final response, RTT seconds, retransmissions)."""
        ...

    async def close(self) -> None:
        """Release the channel (no-op for the shared UDP socket)."""
        ...


TransactionDone = Callable[[SipMessage | BaseException, float, int], None]
"""Called once per transaction with (final response or error, RTT seconds, retransmissions)."""


class _Transaction:
    __slots__ = (
        "addr",
        "branch",
        "data",
        "deadline",
        "done",
        "interval",
        "resends",
        "rtt",
        "sent",
        "slot",
        "t2",
    )

    def __init__(
        self,
        branch: str,
        data: bytes,
        addr: tuple[str, int],
        deadline: float,
        done: TransactionDone,
        t1: float,
        t2: float,
    ) -> None:
        self.branch = branch
        self.data = data
        self.addr = addr
        self.deadline = deadline
        self.done = done
        self.interval = t1
        self.t2 = t2
        self.slot = 0.0  # fire time of the timer bucket holding it (0: none)
        self.sent = 0.0
        self.rtt = 0.0
        self.resends = 0


class _Bucket:
    """Transactions whose timer E/F fires at the same instant: one loop timer for all."""

    __slots__ = ("handle", "live", "txns")

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self.handle = handle
        self.txns: list[_Transaction] = []
        self.live = 0  # transactions still waiting on this bucket; at 0 its timer is cancelled


class UdpEndpoint:
    """A non-blocking UDP socket shared by all probes of one address family on one loop.

    Timers are batched: a retransmission is due on a GRID boundary (so every transaction
    sent in one 10 ms slot shares one loop timer) and a timeout at its exact deadline (the
    scheduler starts a tick's probes with one deadline, so they share one too). A bucket
    whose transactions all got their answer cancels its timer, so a healthy peer costs no
    timer wake-ups at all; before, each probe pushed and cancelled its own TimerHandle.
    """

    def __init__(self, family: int) -> None:
        self.family = family
        self._loop = self.loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
                sock.bind(("::", 0))
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                sock.bind(("0.0.0.0", 0))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self._pending: dict[str, _Transaction] = {}
        self._buckets: dict[float, _Bucket] = {}
        self.stray = 0  # responses matching no transaction (late, duplicate or forged)
        self.wakeups = 0  # readiness callbacks (each is an epoll wake-up: the costly part)
        self.received = 0  # datagrams read
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def pending(self) -> int:
        """Transactions waiting for their final response."""
        return len(self._pending)

    def close(self) -> None:
        """Stop reading, fail what is pending, close the socket."""
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for bucket in self._buckets.values():
            bucket.handle.cancel()
        self._buckets.clear()
        pending, self._pending = self._pending, {}
        for txn in pending.values():
            self._complete(txn, ConnectionAbortedError("SIP UDP socket closed"))

    def start(
        self,
        data: bytes,
        addr: tuple[str, int],
        branch: str,
        deadline: float,
        done: TransactionDone,
        t1: float = T1,
        t2: float = T2,
    ) -> None:
        """Send `data` and call `done` once: final response, timeout at `deadline`, or error.

        `done` is never called from inside start(); a send error raises OSError instead.
        """
        txn = _Transaction(branch, data, addr, deadline, done, t1, t2)
        txn.sent = time.perf_counter()
        self._send(data, addr)
        self._pending[branch] = txn
        now = self._loop.time()
        self._arm(txn, min(_ceil_grid(now + t1), deadline))

    async def transact(
        self,
        data: bytes,
        addr: tuple[str, int],
        branch: str,
        deadline: float,
        t1: float = T1,
        t2: float = T2,
    ) -> tuple[SipMessage, float, int]:
        """Send and retransmit until the final response for `branch` or the deadline."""
        fut: asyncio.Future[tuple[SipMessage, float, int]] = self._loop.create_future()

        def done(result: SipMessage | BaseException, rtt: float, resends: int) -> None:
            if fut.done():
                return
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result((result, rtt, resends))

        self.start(data, addr, branch, deadline, done, t1, t2)
        try:
            return await fut
        finally:
            txn = self._pending.get(branch)
            if txn is not None and txn.done is done:  # cancelled: forget it
                self._finish(txn)

    def _arm(self, txn: _Transaction, when: float) -> None:
        bucket = self._buckets.get(when)
        if bucket is None:
            bucket = _Bucket(self._loop.call_at(when, self._fire, when))
            self._buckets[when] = bucket
        bucket.txns.append(txn)
        bucket.live += 1
        txn.slot = when

    def _finish(self, txn: _Transaction) -> None:
        """Take `txn` out of the pending table and of its timer bucket."""
        del self._pending[txn.branch]
        slot, txn.slot = txn.slot, 0.0
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.live -= 1
            if bucket.live <= 0:
                bucket.handle.cancel()
                del self._buckets[slot]

    @staticmethod
    def _complete(txn: _Transaction, result: SipMessage | BaseException) -> None:
        try:
            txn.done(result, txn.rtt, txn.resends)
        except Exception as exc:  # noqa: BLE001 - one caller's bug must not stop the reader
            log.error("SIP transaction callback raised", error=repr(exc))

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            pass  # socket buffer full: timer E resends
        except OSError:
            # With IP_RECVERR a pending ICMP error of *another* destination can surface
            # here; sort it out and try once more.
            if not self._drain_errors():
                raise
            try:
                self.sock.sendto(data, addr)
            except BlockingIOError:
                pass

    def _fire(self, when: float) -> None:
        """Timer E/F of every transaction in the bucket due at `when` (RFC 3261 §17.1.2.2)."""
        bucket = self._buckets.pop(when, None)
        if bucket is None:
            return
        now = self._loop.time()
        pending = self._pending
        for txn in bucket.txns:
            if txn.slot != when or pending.get(txn.branch) is not txn:
                continue  # answered (or failed) meanwhile
            txn.slot = 0.0
            if now >= txn.deadline - 0.001:
                del pending[txn.branch]
                self._complete(txn, TimeoutError("no SIP response"))
                continue
            try:
                self._send(txn.data, txn.addr)
            except OSError as exc:
                del pending[txn.branch]
                self._complete(txn, exc)
                continue
            txn.resends += 1
            txn.interval = min(txn.interval * 2, txn.t2)
            self._arm(txn, min(_ceil_grid(now + txn.interval), txn.deadline))

    def _readable(self) -> None:
        recv = self.sock.recvfrom
        got = 0
        for _ in range(_RECV_BATCH):
            try:
                data, _src = recv(MAX_MESSAGE)
            except BlockingIOError:
                break
            except OSError:
                self._drain_errors()
                got += 1
                continue
            got += 1
            self._deliver(data)
        self.wakeups += 1
        self.received += got
        if got == 0:
            # Woken by EPOLLERR with the socket error already consumed: drain the queue.
            self._drain_errors()

    def _deliver(self, data: bytes) -> None:
        try:
            msg = parse(data)
        except SipParseError as exc:
            self._fail_garbage(data, exc)
            return
        branch = msg.top_via_branch()
        txn = self._pending.get(branch) if branch else None
        if txn is None or msg.status is None:
            self.stray += 1
            return
        if msg.status < 200:
            # §17.1.2.2: provisional → Proceeding; keep retransmitting at T2.
            txn.interval = txn.t2
            return
        txn.rtt = time.perf_counter() - txn.sent  # at receipt, not when the caller wakes
        self._finish(txn)
        self._complete(txn, msg)

    def _fail_garbage(self, data: bytes, exc: SipParseError) -> None:
        # A garbage reply that still names one of our branches fails that probe as a
        # protocol error instead of letting it time out.
        start = data.find(b"branch=z9hG4bK")
        if start < 0:
            self.stray += 1
            return
        token = data[start + 7 : start + 7 + 64].split(b";")[0].split(b"\r")[0].split(b",")[0]
        branch = token.strip().decode("ascii", "replace")
        txn = self._pending.get(branch)
        if txn is None:
            self.stray += 1
            return
        self._finish(txn)
        self._complete(txn, exc)

    def _drain_errors(self) -> bool:
        """Read queued ICMP errors; fail transactions sent to each unreachable address."""
        found = False
        while True:
            try:
                _, ancdata, _, addr = self.sock.recvmsg(1, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return found
            except OSError:
                return found
            found = True
            code = errno.ECONNREFUSED
            for _level, _type, cdata in ancdata:
                if len(cdata) >= 4:
                    code = struct.unpack("=I", cdata[:4])[0] or code
            self._fail_address(addr, code)

    def _fail_address(self, addr: tuple[str, int] | None, code: int) -> None:
        if not addr:
            return
        key = (addr[0], addr[1])
        failed = [t for t in self._pending.values() if (t.addr[0], t.addr[1]) == key]
        for txn in failed:
            self._finish(txn)
            self._complete(txn, OSError(code, f"ICMP error: {os.strerror(code).lower()}"))


def _ceil_grid(when: float) -> float:
    """`when` rounded up to the retransmission timer grid (shared buckets, ≤ GRID later)."""
    return math.ceil(when / GRID) * GRID


async def _close_endpoint(ep: UdpEndpoint) -> None:
    ep.close()


def _udp4() -> UdpEndpoint:
    return UdpEndpoint(socket.AF_INET)


def _udp6() -> UdpEndpoint:
    return UdpEndpoint(socket.AF_INET6)


_LAST: dict[int, UdpEndpoint] = {}  # the last endpoint per family: one loop runs them all


def udp_endpoint(family: int) -> UdpEndpoint:
    """The loop's shared UDP endpoint for `family`, closed by checks.resources.close_all()."""
    ep = _LAST.get(family)
    # Once per probe: skip the per-loop registry (a WeakKeyDictionary) in the usual case.
    if ep is not None and ep.loop is asyncio.get_running_loop() and ep.sock.fileno() >= 0:
        return ep
    if family == socket.AF_INET6:
        ep = shared("sip.udp6", _udp6, _close_endpoint)
    else:
        ep = shared("sip.udp4", _udp4, _close_endpoint)
    _LAST[family] = ep
    return ep


@lru_cache(maxsize=4096)
def local_ip_for(ip: str, family: int) -> str:
    """The source address the kernel picks toward `ip` (connect() on UDP sends nothing)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((ip, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


class UdpChannel:
    """A Channel over the shared UDP socket to one destination."""

    transport = "UDP"

    def __init__(self, dest: Destination, t1: float = T1, t2: float = T2) -> None:
        self._ep = udp_endpoint(dest.family)
        self._addr = (dest.ip, dest.port)
        self._t1, self._t2 = t1, t2
        self.local = (local_ip_for(dest.ip, dest.family), self._ep.port)

    async def transact(
        self, data: bytes, branch: str, deadline: float
    ) -> tuple[SipMessage, float, int]:
        """Send over UDP with retransmissions; RTT counts from the first send."""
        return await self._ep.transact(data, self._addr, branch, deadline, self._t1, self._t2)

    async def close(self) -> None:
        """Nothing to release: the socket is shared."""


class StreamChannel:
    """A Channel over one TCP or TLS connection (RFC 3261 §18: framing by Content-Length)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        self._reader, self._writer = reader, writer
        self.transport = transport
        sockname = writer.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1]))

    @classmethod
    async def open(cls, dest: Destination, ssl_ctx: ssl.SSLContext | None) -> StreamChannel:
        """Connect (and handshake for TLS, with SNI unless the name is an IP address)."""
        sni = None
        if ssl_ctx is not None:
            sni = dest.server_name
        reader, writer = await asyncio.open_connection(
            dest.ip, dest.port, ssl=ssl_ctx, server_hostname=sni, limit=MAX_MESSAGE
        )
        return cls(reader, writer, dest.transport)

    async def transact(
        self, data: bytes, branch: str, deadline: float
    ) -> tuple[SipMessage, float, int]:
        """Write the request, read messages until the final response for `branch`."""
        sent = time.perf_counter()
        self._writer.write(data)
        async with asyncio.timeout_at(deadline):
            await self._writer.drain()
            while True:
                msg = await self.read_message()
                if msg.status is None or msg.top_via_branch() != branch or msg.status < 200:
                    continue  # requests from the server, other transactions, provisionals
                return msg, time.perf_counter() - sent, 0

    async def read_message(self) -> SipMessage:
        """Read one framed message; raises SipParseError on garbage, EOFError on close."""
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
            while not head.strip():  # RFC 5626 CRLF keepalives
                head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise ConnectionResetError(errno.ECONNRESET, "server closed the connection") from None
        except asyncio.LimitOverrunError:
            raise SipParseError("headers larger than 64 KiB") from None
        m = _CONTENT_LENGTH.search(head)
        if m is None:
            raise SipParseError("Content-Length is required on stream transports")
        length = int(m.group(1))
        if length > MAX_MESSAGE:
            raise SipParseError(f"Content-Length {length} too large")
        body = await self._reader.readexactly(length) if length else b""
        return parse(head + body, datagram=False)

    async def close(self) -> None:
        """Close the connection (bounded; a stuck peer must not hold the probe)."""
        self._writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass


async def open_channel(
    dest: Destination, ssl_ctx: ssl.SSLContext | None, t1: float = T1, t2: float = T2
) -> Channel:
    """A channel to `dest`: the shared UDP socket, or a new TCP/TLS connection."""
    if dest.transport == "UDP":
        return UdpChannel(dest, t1, t2)
    if dest.transport == "TLS" and ssl_ctx is None:
        raise ValueError("TLS transport needs an SSL context")
    return await StreamChannel.open(dest, ssl_ctx if dest.transport == "TLS" else None)
