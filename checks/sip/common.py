"""What the sip_options and sip_register checks share: config fields, TLS, channels, errors."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from functools import lru_cache

from pydantic import Field, field_validator, model_validator

from checks.base import CheckConfig, time_left
from checks.errors import classify_exception
from checks.sip.digest import ChallengeError
from checks.sip.message import SipMessage, SipParseError
from checks.sip.resolve import Destination, ResolveError, literal_destination, parse_uri, resolve
from checks.sip.transport import T1, T2, Channel, open_channel
from nocd.duration import Duration
from nocd.model import FailureClass, Severity

USER_AGENT = "nocd/0.1"
_DIGEST_RESPONSE = re.compile(r'(response\s*=\s*)"[^"]*"', re.IGNORECASE)


class SipCheckConfig(CheckConfig):
    """Fields shared by SIP checks that talk to a server named by a sip:/sips: URI."""

    target: str
    tls_verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    key_file: str | None = None
    server_name: str | None = Field(None, description="TLS name to verify (default: URI host)")
    t1: Duration = Field(T1, description="RFC 3261 T1: first UDP retransmission interval")
    degraded_after: Duration | None = Field(None, description="slower than this: degraded")
    severity_by_failure: dict[FailureClass, Severity] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        # Uncached: the cache would keep the YAML parser's str as its key, pinning parse
        # memory (nocd/compact.py); probes fill it with the config's own strings.
        parse_uri.__wrapped__(v)
        return v

    @model_validator(mode="after")
    def _tls_files(self) -> SipCheckConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if not 0.01 <= self.t1 <= 10:
            raise ValueError("t1 must be between 10ms and 10s")
        return self


@lru_cache(maxsize=64)
def ssl_context(
    verify: bool, ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    """A client context: verification on unless disabled, optional CA and client cert."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


async def locate(cfg: SipCheckConfig, deadline: float) -> Destination:
    """Where the check's target lives (RFC 3263), bounded by the deadline."""
    uri = parse_uri(cfg.target)
    dest = literal_destination(uri)
    if dest is None:
        dest = await resolve(uri, time_left(deadline))
    if cfg.server_name is not None:
        dest = Destination(
            dest.transport, dest.ip, dest.port, dest.family, dest.how, cfg.server_name
        )
    return dest


async def connect(cfg: SipCheckConfig, dest: Destination, deadline: float) -> Channel:
    """Open a channel to `dest`: the shared UDP socket, or a TCP/TLS connection."""
    if dest.transport == "UDP":
        return await open_channel(dest, None, cfg.t1, T2)
    ctx = None
    if dest.transport == "TLS":
        ctx = ssl_context(cfg.tls_verify, cfg.ca_file, cfg.cert_file, cfg.key_file)
    async with asyncio.timeout_at(deadline):
        return await open_channel(dest, ctx)


def classify(exc: BaseException) -> tuple[FailureClass, str]:
    """Failure class and detail for anything a SIP probe can raise."""
    if isinstance(exc, SipParseError):
        return FailureClass.PROTOCOL, f"malformed SIP reply: {exc}"
    if isinstance(exc, ChallengeError):
        return FailureClass.PROTOCOL, f"unusable digest challenge: {exc}"
    if isinstance(exc, ResolveError):
        return FailureClass.DNS, str(exc)
    if isinstance(exc, TimeoutError):
        return FailureClass.TIMEOUT, str(exc) or "no SIP response before the deadline"
    if isinstance(exc, OSError) and (exc.strerror or "").startswith("ICMP"):
        fc, _ = classify_exception(exc)
        return fc, exc.strerror or str(exc)
    return classify_exception(exc)


def status_failure(status: int) -> FailureClass:
    """The failure class of a final response that is not a success."""
    if status == 503:
        return FailureClass.OVERLOADED
    if status in (401, 403, 407, 404, 484):
        return FailureClass.CONFIG
    if status >= 500:
        return FailureClass.SERVER_ERROR
    return FailureClass.BAD_STATUS


def default_severity(failure: FailureClass) -> Severity:
    """Default judgement of a SIP failure: overload degraded, config low, else critical."""
    if failure in (FailureClass.OVERLOADED, FailureClass.SLOW):
        return Severity.DEGRADED
    if failure is FailureClass.CONFIG:
        return Severity.LOW
    return Severity.CRITICAL


def peer_software(msg: SipMessage) -> dict[str, str]:
    """Server / User-Agent of a reply, for evidence (what PBX and version answered)."""
    # One pass over the headers (once per probe): the first of each, if not empty.
    server = agent = None
    for name, value in msg.headers:
        if name == "server":
            if server is None:
                server = value
        elif name == "user-agent" and agent is None:
            agent = value
    out = {}
    if server:
        out["server"] = server[:200]
    if agent:
        out["user_agent"] = agent[:200]
    return out


class Transcript:
    """A human transcript of SIP transactions for `nocd probe --debug` (or nothing)."""

    def __init__(self, enabled: bool) -> None:
        self.lines: list[str] | None = [] if enabled else None
        self._t0 = time.perf_counter()

    def note(self, text: str) -> None:
        """Add one timestamped line."""
        if self.lines is not None:
            self.lines.append(f"[{(time.perf_counter() - self._t0) * 1000:8.1f} ms] {text}")

    def message(self, direction: str, data: bytes) -> None:
        """Add a whole message, indented, after a direction line."""
        if self.lines is not None:
            self.note(direction)
            text = data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")
            # A digest response allows offline password guessing: never show it.
            text = _DIGEST_RESPONSE.sub(r'\1"<redacted>"', text)
            self.lines.extend("    " + line for line in text.split("\n"))
