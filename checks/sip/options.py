"""`sip_options` check: an OPTIONS ping over UDP, TCP or TLS, judged like a SIP operator would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

from pydantic import Field

from checks.sip.common import (
    USER_AGENT,
    SipCheckConfig,
    Transcript,
    classify,
    connect,
    default_severity,
    locate,
    peer_software,
    status_failure,
)
from checks.sip.message import SipMessage, build_request, new_token
from checks.sip.resolve import Destination, literal_destination, parse_uri
from checks.sip.transport import local_ip_for, udp_endpoint
from nocd.model import FailureClass, Observation, Severity, Verdict


class Config(SipCheckConfig):
    """Config of a `sip_options` check."""

    type: Literal["sip_options"]
    accept_any_response: bool = Field(
        False, description="any final response means alive (like Kamailio's dispatcher)"
    )
    ok_status: tuple[int, ...] = Field((), description="extra status codes that count as healthy")
    from_user: str = "nocd"


@lru_cache(maxsize=65536)
def _template(target: str, from_user: str, transport: str, local: str, port: int) -> str:
    """The request with `{b}` (branch) and `{t}` (tag/Call-ID token) left to fill per probe."""
    uri = parse_uri(target)
    host = f"[{local}]" if ":" in local else local
    # Request-URI without URI headers; params like ;transport= stay (RFC 3261 §19.1.5).
    ruri = target.split("?", 1)[0]
    data = build_request(
        "OPTIONS",
        ruri,
        via=f"SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{{b}};rport",
        from_=f"<sip:{from_user}@{host}>;tag={{t}}",
        to=f"<{uri.scheme}:{uri.user + '@' if uri.user else ''}{uri.hostport}>",
        call_id=f"{{t}}@{host}",
        cseq=1,
        extra=(
            ("Contact", f"<sip:{from_user}@{host}:{port}>"),
            ("Accept", "application/sdp"),
            ("User-Agent", USER_AGENT),
        ),
    )
    return (
        data.decode()
        .replace("{", "{{")
        .replace("}", "}}")
        .replace("{{b}}", "{b}")
        .replace("{{t}}", "{t}")
    )


@lru_cache(maxsize=65536)
def _literal(target: str) -> tuple[Destination, str] | None:
    dest = literal_destination(parse_uri(target))
    return None if dest is None else (dest, str(dest))


async def _exchange(
    cfg: Config, dest: Destination, deadline: float, trace: Transcript
) -> tuple[SipMessage, float, int]:
    if dest.transport == "UDP":
        # Hot path: the shared socket directly, no per-probe channel object.
        ep = udp_endpoint(dest.family)
        token = new_token()
        local = local_ip_for(dest.ip, dest.family)
        template = _template(cfg.target, cfg.from_user, "UDP", local, ep.port)
        data = template.format(b=token, t=token).encode()
        if trace.lines is not None:
            trace.message(f"sent {len(data)} bytes", data)
        return await ep.transact(data, (dest.ip, dest.port), "z9hG4bK" + token, deadline, cfg.t1)
    channel = await connect(cfg, dest, deadline)
    try:
        token = new_token()
        host, port = channel.local
        template = _template(cfg.target, cfg.from_user, channel.transport, host, port)
        data = template.format(b=token, t=token).encode()
        if trace.lines is not None:
            trace.message(f"sent {len(data)} bytes", data)
        return await channel.transact(data, "z9hG4bK" + token, deadline)
    finally:
        await channel.close()


async def _run(cfg: Config, deadline: float, trace: Transcript) -> Observation:
    start = time.perf_counter()
    dest: Destination | None = None
    address = ""
    try:
        known = _literal(cfg.target) if cfg.server_name is None else None
        if known is not None:
            dest, address = known
        else:
            dest = await locate(cfg, deadline)
            address = str(dest)
        if trace.lines is not None:
            trace.note(f"{cfg.target} → {dest} (found by {dest.how})")
        msg, rtt, resends = await _exchange(cfg, dest, deadline, trace)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe never raises
        obs = _failure(exc, dest, start)
        trace.note(f"failed: {obs.failure.value}: {obs.detail}")
        return obs
    if trace.lines is not None:
        trace.message(
            f"received {msg.status or 0} after {rtt * 1000:.1f} ms ({resends} retransmissions)",
            msg.raw,
        )
    return _observation(cfg, dest, address, msg, rtt, resends)


def _observation(
    cfg: Config, dest: Destination, address: str, msg: SipMessage, rtt: float, resends: int
) -> Observation:
    """The Observation of a final response (shared by the task and the callback paths)."""
    status = msg.status or 0
    values = {
        "status": status,
        "reason": msg.reason,
        "rtt_ms": round(rtt * 1000, 3),
        "transport": dest.transport,
        "address": address,
        "resolved_by": dest.how,
        "retransmits": resends,
        **peer_software(msg),
    }
    detail = f"{status} {msg.reason}"
    # What Observation.success/failed build, without their keyword packing and dict copy.
    if 200 <= status < 300 or cfg.accept_any_response or status in cfg.ok_status:
        return Observation(True, FailureClass.NONE, detail, rtt, MappingProxyType(values))
    return Observation(False, status_failure(status), detail, rtt, MappingProxyType(values))


def _failure(exc: BaseException, dest: Destination | None, started: float) -> Observation:
    """The Observation of a probe that raised (shared by the task and the callback paths)."""
    fc, detail = classify(exc)
    where = {} if dest is None else {"transport": dest.transport, "address": str(dest)}
    return Observation.failed(fc, detail, time.perf_counter() - started, **where)


async def probe(cfg: Config, deadline: float) -> Observation:
    """Send one OPTIONS and measure the final response; never raises except on cancel."""
    return await _run(cfg, deadline, _NO_TRACE)


def start(cfg: Config, deadline: float, done: Callable[[Observation], None]) -> bool:
    """Start a UDP OPTIONS probe without a task; `done(obs)` follows from the event loop.

    The scheduler's fast path (checks.base.StartFn): the same request, transaction, timers
    and Observation as probe(), without a coroutine chain and a task per probe. Returns
    False, having done nothing, for targets that need a coroutine (DNS, TCP, TLS).
    """
    if cfg.server_name is not None:
        return False
    known = _literal(cfg.target)
    if known is None or known[0].transport != "UDP":
        return False
    dest, address = known
    started = time.perf_counter()

    def finished(result: SipMessage | BaseException, rtt: float, resends: int) -> None:
        if isinstance(result, BaseException):
            done(_failure(result, dest, started))
        else:
            done(_observation(cfg, dest, address, result, rtt, resends))

    try:
        ep = udp_endpoint(dest.family)
        token = new_token()
        template = _template(
            cfg.target, cfg.from_user, "UDP", local_ip_for(dest.ip, dest.family), ep.port
        )
        ep.start(
            template.format(b=token, t=token).encode(),
            (dest.ip, dest.port),
            "z9hG4bK" + token,
            deadline,
            finished,
            cfg.t1,
        )
    except Exception as exc:  # noqa: BLE001 - a probe never raises; done() comes later
        asyncio.get_running_loop().call_soon(done, _failure(exc, dest, started))
    return True


async def probe_verbose(cfg: Config, deadline: float) -> tuple[Observation, list[str]]:
    """probe() plus the transaction transcript for `nocd probe --debug`."""
    trace = Transcript(True)
    obs = await _run(cfg, deadline, trace)
    return obs, trace.lines or []


_NO_TRACE = Transcript(False)

_WHY = {
    FailureClass.OVERLOADED: "overloaded or in maintenance",
    FailureClass.CONFIG: "configuration failure (the server rejects our request)",
}


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """2xx ok; 503 degraded; 401/403/407/404/484 config (low); no answer critical; slow degraded."""
    if not obs.ok:
        severity = cfg.severity_by_failure.get(obs.failure) or cfg.on_failure
        severity = severity or default_severity(obs.failure)
        why = _WHY.get(obs.failure)
        return Verdict(severity, obs.failure, f"{obs.detail}: {why}" if why else obs.detail)
    if cfg.degraded_after is not None and obs.duration_s > cfg.degraded_after:
        severity = cfg.severity_by_failure.get(FailureClass.SLOW, Severity.DEGRADED)
        return Verdict(
            severity,
            FailureClass.SLOW,
            f"OPTIONS answered in {obs.duration_s * 1000:.0f} ms"
            f" (limit {cfg.degraded_after * 1000:.0f} ms)",
        )
    return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
