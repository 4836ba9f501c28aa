"""`sip_options` check: an OPTIONS ping over UDP, TCP or TLS, judged like a SIP operator would."""

from __future__ import annotations

import asyncio
import time
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
from checks.sip.message import build_request, new_branch, new_token
from checks.sip.resolve import Destination, parse_uri
from checks.sip.transport import Channel
from nocd.model import FailureClass, Observation, Severity, Verdict


class Config(SipCheckConfig):
    """Config of a `sip_options` check."""

    type: Literal["sip_options"]
    accept_any_response: bool = Field(
        False, description="any final response means alive (like Kamailio's dispatcher)"
    )
    ok_status: tuple[int, ...] = Field((), description="extra status codes that count as healthy")
    from_user: str = "nocd"


def _request(cfg: Config, channel: Channel, branch: str) -> bytes:
    uri = parse_uri(cfg.target)
    host, port = channel.local
    local = f"[{host}]" if ":" in host else host
    # Request-URI without URI headers; params like ;transport= stay (RFC 3261 §19.1.5).
    ruri = cfg.target.split("?", 1)[0]
    return build_request(
        "OPTIONS",
        ruri,
        via=f"SIP/2.0/{channel.transport} {local}:{port};branch={branch};rport",
        from_=f"<sip:{cfg.from_user}@{local}>;tag={new_token()}",
        to=f"<{uri.scheme}:{uri.user + '@' if uri.user else ''}{uri.hostport}>",
        call_id=f"{new_token()}@{local}",
        cseq=1,
        extra=(
            ("Contact", f"<sip:{cfg.from_user}@{local}:{port}>"),
            ("Accept", "application/sdp"),
            ("User-Agent", USER_AGENT),
        ),
    )


async def _run(cfg: Config, deadline: float, trace: Transcript) -> Observation:
    start = time.perf_counter()
    dest: Destination | None = None
    try:
        dest = await locate(cfg, deadline)
        trace.note(f"{cfg.target} → {dest} (found by {dest.how})")
        channel = await connect(cfg, dest, deadline)
        try:
            branch = new_branch()
            data = _request(cfg, channel, branch)
            trace.message(f"sent {len(data)} bytes", data)
            msg, rtt, resends = await channel.transact(data, branch, deadline)
        finally:
            await channel.close()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a probe never raises
        fc, detail = classify(exc)
        trace.note(f"failed: {fc.value}: {detail}")
        where = {} if dest is None else {"transport": dest.transport, "address": str(dest)}
        return Observation.failed(fc, detail, time.perf_counter() - start, **where)
    status = msg.status or 0
    trace.message(
        f"received {status} after {rtt * 1000:.1f} ms ({resends} retransmissions)", msg.raw
    )
    values = {
        "status": status,
        "reason": msg.reason,
        "rtt_ms": round(rtt * 1000, 3),
        "transport": dest.transport,
        "address": str(dest),
        "resolved_by": dest.how,
        "retransmits": resends,
        **peer_software(msg),
    }
    detail = f"{status} {msg.reason}".strip()
    if 200 <= status < 300 or cfg.accept_any_response or status in cfg.ok_status:
        return Observation.success(detail, rtt, **values)
    return Observation.failed(status_failure(status), detail, rtt, **values)


async def probe(cfg: Config, deadline: float) -> Observation:
    """Send one OPTIONS and measure the final response; never raises except on cancel."""
    return await _run(cfg, deadline, _NO_TRACE)


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
