"""`icmp` check: N echo requests; loss and round-trip times. Unprivileged socket, else raw."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from typing import Any, Literal

from pydantic import Field, model_validator

from checks.base import CheckConfig, failure_verdict, time_left
from checks.errors import classify_exception
from nocd.duration import Duration
from nocd.model import FailureClass, Observation, Severity, Verdict

ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
NOT_PERMITTED = (
    "ICMP not permitted: allow unprivileged ping with "
    "sysctl net.ipv4.ping_group_range='0 2147483647' (must cover nocd's group), "
    "or grant CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_RAW)"
)


class IcmpNotPermitted(OSError):
    """Neither an unprivileged ICMP socket nor a raw one may be opened here."""


class Config(CheckConfig):
    """Config of an `icmp` check."""

    type: Literal["icmp"]
    target: str
    count: int = Field(3, ge=1, le=20)
    spacing: Duration = Field(0.2, description="pause between echo requests")
    payload_size: int = Field(56, ge=16, le=1472)
    degraded_loss: float = Field(20.0, ge=0, le=100, description="loss % above this: degraded")
    critical_loss: float = Field(100.0, ge=0, le=100, description="loss % at/above: critical")
    degraded_rtt: Duration | None = Field(None, description="average RTT above this: degraded")
    critical_rtt: Duration | None = None

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if (self.count - 1) * self.spacing >= self.timeout:
            raise ValueError("count × spacing must fit inside the timeout")
        if self.degraded_loss > self.critical_loss:
            raise ValueError("degraded_loss cannot exceed critical_loss")
        return self


def open_socket(family: int) -> tuple[socket.socket, bool]:
    """An ICMP socket for `family` and whether it is raw; raises IcmpNotPermitted."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT):
                continue
            raise
        sock.setblocking(False)
        return sock, kind == socket.SOCK_RAW
    raise IcmpNotPermitted(errno.EPERM, NOT_PERMITTED)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; the kernel fills the ICMPv6 checksum and the id of ping sockets."""
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == socket.AF_INET:
        header = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq)
    return header + payload


def parse_reply(family: int, data: bytes, raw: bool) -> tuple[int, bytes] | None:
    """(sequence, payload) of an echo reply, or None for any other packet."""
    if raw and family == socket.AF_INET and data[:1] and data[0] >> 4 == 4:
        data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets include the IP header
    if len(data) < 8:
        return None
    kind, code, _, _, seq = struct.unpack("!BBHHH", data[:8])
    if kind != ECHO_REPLY[family] or code != 0:
        return None
    return seq, data[8:]


async def probe(cfg: Config, deadline: float) -> Observation:
    """Send `count` echo requests and collect replies; never raises except on cancellation."""
    start = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(cfg.target, None, type=socket.SOCK_DGRAM), time_left(deadline)
        )
        family, _, _, _, sockaddr = infos[0]
        sock, raw = open_socket(family)
    except asyncio.CancelledError:
        raise
    except IcmpNotPermitted as exc:
        return Observation.failed(FailureClass.INTERNAL, exc.strerror or NOT_PERMITTED)
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    try:
        rtts, sent = await _exchange(cfg, sock, raw, family, sockaddr, deadline)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    finally:
        sock.close()
    return _observation(cfg, rtts, sent, raw, str(sockaddr[0]), time.perf_counter() - start)


async def _exchange(
    cfg: Config, sock: socket.socket, raw: bool, family: int, addr: Any, deadline: float
) -> tuple[list[float], int]:
    loop = asyncio.get_running_loop()
    token = os.urandom(8)  # tells our replies from other pings' (raw sockets see them all)
    ident = int.from_bytes(os.urandom(2), "big")
    padding = bytes(cfg.payload_size - len(token))
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}

    async def receive() -> None:
        while len(rtts) < cfg.count:
            data, _ = await loop.sock_recvfrom(sock, 65535)
            now = time.perf_counter()
            reply = parse_reply(family, data, raw)
            if reply is None or not reply[1].startswith(token):
                continue
            seq = reply[0]
            if seq in sent and seq not in rtts:
                rtts[seq] = now - sent[seq]

    receiver = asyncio.create_task(receive())
    try:
        async with asyncio.timeout(time_left(deadline)):
            for seq in range(cfg.count):
                sent[seq] = time.perf_counter()
                await loop.sock_sendto(
                    sock, echo_request(family, ident, seq, token + padding), addr
                )
                if seq < cfg.count - 1:
                    await asyncio.sleep(cfg.spacing)
            await receiver
    except TimeoutError:
        pass
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    return list(rtts.values()), len(sent)


def _observation(
    cfg: Config, rtts: list[float], sent: int, raw: bool, address: str, elapsed: float
) -> Observation:
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 100.0
    values: dict[str, Any] = {
        "sent": sent,
        "received": len(rtts),
        "loss_pct": round(loss, 1),
        "address": address,
        "socket": "raw" if raw else "unprivileged",
    }
    if not rtts:
        return Observation.failed(
            FailureClass.TIMEOUT, f"no echo reply from {address} ({sent} sent)", elapsed, **values
        )
    values.update(rtt_min_s=min(rtts), rtt_avg_s=sum(rtts) / len(rtts), rtt_max_s=max(rtts))
    return Observation.success(
        f"{len(rtts)}/{sent} replies from {address}, avg {values['rtt_avg_s'] * 1000:.2f} ms",
        elapsed,
        **values,
    )


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Total loss → critical; loss or RTT above the limits → degraded (or critical)."""
    if not obs.ok:
        return failure_verdict(obs, cfg, Severity.CRITICAL)
    loss = float(obs.values.get("loss_pct", 0.0))
    rtt = float(obs.values.get("rtt_avg_s", 0.0))
    if loss >= cfg.critical_loss:
        return Verdict(Severity.CRITICAL, FailureClass.THRESHOLD, f"{loss:g}% packet loss")
    if cfg.critical_rtt is not None and rtt > cfg.critical_rtt:
        return Verdict(Severity.CRITICAL, FailureClass.SLOW, _rtt_reason(rtt, cfg.critical_rtt))
    if loss > cfg.degraded_loss:
        return Verdict(Severity.DEGRADED, FailureClass.THRESHOLD, f"{loss:g}% packet loss")
    if cfg.degraded_rtt is not None and rtt > cfg.degraded_rtt:
        return Verdict(Severity.DEGRADED, FailureClass.SLOW, _rtt_reason(rtt, cfg.degraded_rtt))
    return Verdict(Severity.OK, FailureClass.NONE, obs.detail)


def _rtt_reason(rtt: float, limit: float) -> str:
    return f"average RTT {rtt * 1000:.1f} ms (limit {limit * 1000:.0f} ms)"
