"""`tcp` check: connect to host:port, optionally complete a TLS handshake."""

from __future__ import annotations

import asyncio
import ssl
import time
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from checks.base import CheckConfig, failure_verdict, time_left
from checks.errors import classify_exception
from nocd.duration import Duration
from nocd.model import FailureClass, Observation, Severity, Verdict


def split_host_port(target: str) -> tuple[str, int]:
    """Split `host:port` or `[v6]:port`; raises ValueError when the port is missing or bad."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = target.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("target must be host:port (e.g. pbx.example.com:5061)")
    return host, int(port_text)


class Config(CheckConfig):
    """Config of a `tcp` check."""

    type: Literal["tcp"]
    target: str
    tls: bool = False
    tls_verify: bool = True
    server_name: str | None = None
    ca_file: str | None = None
    degraded_after: Duration | None = Field(None, description="connect time above: degraded")

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_host_port(v)
        return v


@lru_cache(maxsize=64)
def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context: verification on unless explicitly disabled."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def probe(cfg: Config, deadline: float) -> Observation:
    """Open (and close) one connection; never raises except on cancellation."""
    host, port = split_host_port(cfg.target)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(time_left(deadline)):
            ctx = tls_context(cfg.tls_verify, cfg.ca_file) if cfg.tls else None
            _, writer = await asyncio.open_connection(
                host,
                port,
                ssl=ctx,
                server_hostname=(cfg.server_name or host) if ctx else None,
            )
            elapsed = time.perf_counter() - start
            peer = writer.get_extra_info("peername")
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
    return Observation.success(f"connected to {address}", elapsed, address=address)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Failure → critical; slow connect → degraded."""
    if not obs.ok:
        return failure_verdict(obs, cfg, Severity.CRITICAL)
    if cfg.degraded_after is not None and obs.duration_s > cfg.degraded_after:
        return Verdict(
            Severity.DEGRADED,
            FailureClass.SLOW,
            f"connect took {obs.duration_s * 1000:.0f} ms (limit {cfg.degraded_after * 1000:.0f} ms)",
        )
    return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
