"""`http` check: one HTTP(S) request; status set, optional body regex, TLS, redirects, latency."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from functools import lru_cache
from typing import Literal

import aiohttp
from pydantic import Field, field_validator

from checks.base import CheckConfig, failure_verdict, success_verdict, time_left
from checks.errors import classify_exception
from checks.resources import shared
from nocd.duration import Duration
from nocd.model import FailureClass, Observation, Severity, Verdict

MAX_BODY = 1 << 20  # read at most 1 MiB of a body: a hostile target cannot exhaust memory


class Config(CheckConfig):
    """Config of an `http` check."""

    type: Literal["http"]
    target: str
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    expect_status: tuple[int, ...] = (200, 201, 202, 203, 204, 206)
    body_regex: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    tls_verify: bool = True
    ca_file: str | None = None
    follow_redirects: bool = True
    max_redirects: int = Field(5, ge=0, le=20)
    degraded_after: Duration | None = Field(None, description="latency above this: degraded")

    @field_validator("target")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("target must be an http:// or https:// URL")
        return v

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return v


@lru_cache(maxsize=64)
def _ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    if not verify:
        return False
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=ca_file)


def _session() -> aiohttp.ClientSession:
    # A fresh connection per probe (force_close), like blackbox_exporter: a probe must see
    # the handshake a new client would, not a warm pooled socket.
    def make() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(force_close=True, limit=0, ttl_dns_cache=10)
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(s: aiohttp.ClientSession) -> None:
        await s.close()

    return shared("http.session", make, close)


async def probe(cfg: Config, deadline: float) -> Observation:
    """Send the request and measure; never raises except on cancellation."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(time_left(deadline)):
            async with _session().request(
                cfg.method,
                cfg.target,
                headers=cfg.headers,
                ssl=_ssl_context(cfg.tls_verify, cfg.ca_file),
                allow_redirects=cfg.follow_redirects,
                max_redirects=cfg.max_redirects,
            ) as resp:
                # Read to the end (bounded): the whole body for the regex, and a body cut
                # short of its Content-Length is a broken reply, not a success.
                body = await _read_body(resp)
                elapsed = time.perf_counter() - start
                values = {"status": resp.status, "url": str(resp.url)}
                if resp.status not in cfg.expect_status:
                    return Observation.failed(
                        _status_class(resp.status),
                        f"HTTP {resp.status} {resp.reason or ''}".strip(),
                        elapsed,
                        **values,
                    )
                if cfg.body_regex is not None:
                    text = body.decode(resp.get_encoding() if resp.charset else "utf-8", "replace")
                    if not re.search(cfg.body_regex, text):
                        return Observation.failed(
                            FailureClass.CONTENT,
                            f"body does not match /{cfg.body_regex}/",
                            elapsed,
                            **values,
                        )
                return Observation.success(f"HTTP {resp.status}", elapsed, **values)
    except asyncio.CancelledError:
        raise
    except aiohttp.TooManyRedirects:
        return Observation.failed(
            FailureClass.BAD_STATUS, "too many redirects", time.perf_counter() - start
        )
    except aiohttp.ClientConnectorCertificateError as exc:
        return Observation.failed(
            FailureClass.TLS,
            f"certificate verification failed: {exc.certificate_error}",
            time.perf_counter() - start,
        )
    except aiohttp.ClientConnectorError as exc:
        fc, detail = classify_exception(exc.os_error)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
        return Observation.failed(
            FailureClass.PROTOCOL, f"invalid HTTP response: {exc}", time.perf_counter() - start
        )
    except aiohttp.ServerDisconnectedError:
        return Observation.failed(
            FailureClass.PROTOCOL, "server closed the connection", time.perf_counter() - start
        )
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)


async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
    # content.read(n) returns as soon as some bytes arrive, not n bytes: loop to EOF.
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY:
        chunk = await resp.content.read(MAX_BODY - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _status_class(status: int) -> FailureClass:
    if status == 503:
        return FailureClass.OVERLOADED
    if status >= 500:
        return FailureClass.SERVER_ERROR
    if status in (401, 403, 407):
        return FailureClass.AUTH
    return FailureClass.BAD_STATUS


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Failure → critical (503 → degraded); slow but correct → degraded."""
    if not obs.ok:
        default = Severity.DEGRADED if obs.failure is FailureClass.OVERLOADED else Severity.CRITICAL
        return failure_verdict(obs, cfg, default)
    return success_verdict(obs, cfg.degraded_after, "response")
