"""`icmp` check against the loopback interface (skipped where ICMP sockets are not allowed)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from checks import icmp
from nocd.model import FailureClass, Severity


def make(target: str, **extra: Any) -> icmp.Config:
    return icmp.Config.model_validate(
        {
            "name": "ping",
            "type": "icmp",
            "target": target,
            "timeout": "2s",
            "spacing": "50ms",
            "count": 5,
            **extra,
        }
    )


def require_icmp(family: int) -> str:
    try:
        sock, raw = icmp.open_socket(family)
    except icmp.IcmpNotPermitted:
        pytest.skip("this host allows neither unprivileged ICMP sockets nor raw ones")
    except OSError as exc:
        pytest.skip(f"no ICMP for this address family here: {exc}")
    sock.close()
    return "raw" if raw else "unprivileged"


async def probe(cfg: icmp.Config) -> Any:
    obs = await icmp.probe(cfg, asyncio.get_running_loop().time() + cfg.timeout)
    return obs, icmp.evaluate(obs, cfg)


async def test_ping_loopback_v4() -> None:
    kind = require_icmp(socket.AF_INET)
    obs, verdict = await probe(make("127.0.0.1"))
    assert obs.ok, obs.detail
    assert verdict.ok
    assert obs.values["sent"] == 5 and obs.values["received"] == 5
    assert obs.values["loss_pct"] == 0
    assert 0 < obs.values["rtt_min_s"] <= obs.values["rtt_avg_s"] <= obs.values["rtt_max_s"] < 1
    assert obs.values["socket"] == kind


async def test_ping_loopback_v6() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    require_icmp(socket.AF_INET6)
    obs, verdict = await probe(make("::1", count=2))
    assert obs.ok and verdict.ok, obs.detail
    assert obs.values["address"] == "::1"


async def test_concurrent_pings_do_not_steal_replies() -> None:
    require_icmp(socket.AF_INET)
    results = await asyncio.gather(*(probe(make("127.0.0.1", count=3)) for _ in range(5)))
    assert all(obs.values["received"] == 3 for obs, _ in results)


async def test_rtt_limit_makes_it_degraded() -> None:
    require_icmp(socket.AF_INET)
    obs, verdict = await probe(make("127.0.0.1", count=2, degraded_rtt="0ms"))
    assert obs.ok
    assert (verdict.severity, verdict.failure) == (Severity.DEGRADED, FailureClass.SLOW)


async def test_unresolvable_name_is_dns_failure() -> None:
    obs, verdict = await probe(make("nonexistent.invalid", count=1))
    assert obs.failure is FailureClass.DNS
    assert verdict.severity is Severity.CRITICAL


async def test_not_permitted_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket

    def deny(family: int = -1, kind: int = -1, proto: int = -1, *a: Any) -> socket.socket:
        if kind in (socket.SOCK_RAW, socket.SOCK_DGRAM) and proto in (
            socket.IPPROTO_ICMP,
            socket.IPPROTO_ICMPV6,
        ):
            raise PermissionError(1, "Operation not permitted")
        return real(family, kind, proto, *a)

    monkeypatch.setattr(icmp.socket, "socket", deny)
    obs, verdict = await probe(make("127.0.0.1", count=1))
    assert obs.failure is FailureClass.INTERNAL
    assert "ping_group_range" in obs.detail and "CAP_NET_RAW" in obs.detail
    assert verdict.severity is Severity.CRITICAL
