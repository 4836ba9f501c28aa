"""`tcp` check: connect to host:port, optionally complete a TLS handshake."""

from __future__ import annotations

import asyncio
import ssl
import time
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from checks.base import CheckConfig, failure_verdict, success_verdict, time_left
from checks.errors import classify_exception
from nocd.duration import Duration
from nocd.model import Observation, Severity, Verdict


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


async def connect_once(
    host: str, port: int, ctx: ssl.SSLContext | None, server_name: str | None, deadline: float
) -> dict[str, object]:
    """Open one connection (TLS when `ctx`), read its peer facts, close it; raises on error.

    Returns `peername`, and with TLS the peer certificate as `cert` (dict) and `der` (bytes).
    """
    async with asyncio.timeout(time_left(deadline)):
        _, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=(server_name or host) if ctx else None
        )
        facts: dict[str, object] = {"peername": writer.get_extra_info("peername")}
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is not None:
            facts["cert"] = sslobj.getpeercert()
            facts["der"] = sslobj.getpeercert(binary_form=True)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the far side closing first is fine: we have what we came for
    return facts


async def probe(cfg: Config, deadline: float) -> Observation:
    """Open (and close) one connection; never raises except on cancellation."""
    host, port = split_host_port(cfg.target)
    start = time.perf_counter()
    try:
        ctx = tls_context(cfg.tls_verify, cfg.ca_file) if cfg.tls else None
        facts = await connect_once(host, port, ctx, cfg.server_name, deadline)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    peer = facts["peername"]
    address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
    return Observation.success(f"connected to {address}", elapsed, address=address)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Failure → critical; slow connect → degraded."""
    if not obs.ok:
        return failure_verdict(obs, cfg, Severity.CRITICAL)
    return success_verdict(obs, cfg.degraded_after, "connect")
