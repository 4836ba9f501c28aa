"""`sip_register` check: register a dedicated test account with digest auth, then unregister it.

The binding uses a unique Contact and is removed with `Expires: 0` right after, so the
synthetic registration never replaces a real phone's binding.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
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
    status_failure,
)
from checks.sip.digest import Challenge, ChallengeError, best_challenge, digest_response
from checks.sip.message import SipMessage, build_request, new_branch, new_token
from checks.sip.resolve import Destination, parse_uri
from checks.sip.transport import Channel
from nocd.model import FailureClass, Observation, Severity, Verdict
from nocd.secrets import Secret

STAGES = ("no_answer", "challenge", "rejected", "server_error", "unregister")


class Config(SipCheckConfig):
    """Config of a `sip_register` check (use a dedicated test account, not a phone's)."""

    type: Literal["sip_register"]
    username: str
    password: Secret
    auth_username: str | None = Field(None, description="digest user if not the username")
    domain: str | None = Field(None, description="AOR domain (default: the target's host)")
    expires: int = Field(60, ge=10, le=3600)


class StageFailure(Exception):
    """Registration failed at a named stage with a failure class."""

    def __init__(self, stage: str, failure: FailureClass, detail: str, status: int = 0) -> None:
        super().__init__(detail)
        self.stage, self.failure, self.detail, self.status = stage, failure, detail, status


@dataclass
class _Dialog:
    """What stays the same across the REGISTERs of one probe (RFC 3261 §10.2)."""

    cfg: Config
    channel: Channel
    ruri: str
    aor: str
    contact: str
    call_id: str
    tag: str
    cseq: int = 0
    challenge: Challenge | None = None
    nc: int = 0
    statuses: list[int] = field(default_factory=list)

    def request(self, expires: int) -> tuple[bytes, str]:
        host, port = self.channel.local
        local = f"[{host}]" if ":" in host else host
        branch = new_branch()
        self.cseq += 1
        extra = [
            ("Contact", f"<{self.contact}>"),
            ("Expires", str(expires)),
            ("User-Agent", USER_AGENT),
        ]
        if self.challenge is not None:
            self.nc += 1
            extra.append(
                digest_response(
                    self.challenge,
                    self.cfg.auth_username or self.cfg.username,
                    self.cfg.password.get_secret_value(),
                    "REGISTER",
                    self.ruri,
                    nc=self.nc,
                )
            )
        data = build_request(
            "REGISTER",
            self.ruri,
            via=f"SIP/2.0/{self.channel.transport} {local}:{port};branch={branch};rport",
            from_=f"<{self.aor}>;tag={self.tag}",
            to=f"<{self.aor}>",
            call_id=self.call_id,
            cseq=self.cseq,
            extra=extra,
        )
        return data, branch


async def _register(
    d: _Dialog, expires: int, deadline: float, trace: Transcript, stage_on_reject: str
) -> SipMessage:
    """One REGISTER, answering up to two challenges (a second only when the nonce was stale)."""
    answered = False
    for _ in range(3):
        data, branch = d.request(expires)
        trace.message(f"sent REGISTER (Expires: {expires})", data)
        try:
            msg, rtt, _ = await d.channel.transact(data, branch, deadline)
        except (TimeoutError, OSError) as exc:
            fc, detail = classify(exc)
            raise StageFailure("no_answer", fc, detail) from None
        status = msg.status or 0
        d.statuses.append(status)
        trace.message(f"received {status} after {rtt * 1000:.1f} ms", msg.raw)
        if status not in (401, 407):
            return msg
        try:
            challenge = best_challenge(msg)
        except ChallengeError as exc:
            raise StageFailure("challenge", FailureClass.PROTOCOL, str(exc), status) from None
        if answered and not challenge.stale:
            raise StageFailure(
                stage_on_reject, FailureClass.AUTH, f"credentials rejected ({status})", status
            )
        d.challenge, d.nc, answered = challenge, 0, True
        trace.note(f"answering {challenge.algorithm} challenge, qop={','.join(challenge.qop)}")
    raise StageFailure(stage_on_reject, FailureClass.AUTH, "challenged repeatedly", 401)


def _check_final(msg: SipMessage, stage: str) -> None:
    status = msg.status or 0
    if 200 <= status < 300:
        return
    failure = status_failure(status)
    if status == 403:
        failure, stage = FailureClass.AUTH, "rejected" if stage != "unregister" else stage
    elif status >= 500 and stage != "unregister":
        stage = "server_error"
    elif stage != "unregister":
        stage = "rejected"
    raise StageFailure(stage, failure, f"{status} {msg.reason}".strip(), status)


def _has_contact(msg: SipMessage, contact: str) -> bool:
    user = contact.split(":", 1)[1].split("@", 1)[0] + "@"
    return any(user in value for value in msg.header_values("contact"))


async def _run(cfg: Config, deadline: float, trace: Transcript) -> Observation:
    start = time.perf_counter()
    dest: Destination | None = None
    d: _Dialog | None = None
    try:
        dest = await locate(cfg, deadline)
        trace.note(f"{cfg.target} → {dest} (found by {dest.how})")
        channel = await connect(cfg, dest, deadline)
        try:
            uri = parse_uri(cfg.target)
            domain = cfg.domain or uri.host_literal
            host, port = channel.local
            local = f"[{host}]" if ":" in host else host
            transport = f";transport={dest.transport.lower()}" if dest.transport != "UDP" else ""
            d = _Dialog(
                cfg,
                channel,
                ruri=f"{uri.scheme}:{uri.hostport}"
                + (f";transport={uri.transport.lower()}" if uri.transport else ""),
                aor=f"{uri.scheme}:{cfg.username}@{domain}",
                contact=f"sip:nocd-{new_token()}@{local}:{port}{transport}",
                call_id=f"{new_token()}@{local}",
                tag=new_token(),
            )
            msg = await _register(d, cfg.expires, deadline, trace, "rejected")
            _check_final(msg, "register")
            latency = time.perf_counter() - start
            bound = _has_contact(msg, d.contact)
            gone = await _register(d, 0, deadline, trace, "unregister")
            _check_final(gone, "unregister")
            if _has_contact(gone, d.contact):
                raise StageFailure("unregister", FailureClass.CONTENT, "binding still listed")
        finally:
            await channel.close()
    except asyncio.CancelledError:
        raise
    except StageFailure as exc:
        trace.note(f"failed at {exc.stage}: {exc.detail}")
        return Observation.failed(
            exc.failure,
            f"{exc.stage}: {exc.detail}",
            time.perf_counter() - start,
            stage=exc.stage,
            status=exc.status,
            **_where(dest),
        )
    except Exception as exc:  # noqa: BLE001 - a probe never raises
        fc, detail = classify(exc)
        stage = "challenge" if fc is FailureClass.PROTOCOL and d and d.statuses else "no_answer"
        trace.note(f"failed at {stage}: {detail}")
        return Observation.failed(
            fc, f"{stage}: {detail}", time.perf_counter() - start, stage=stage, **_where(dest)
        )
    return Observation.success(
        f"registered in {latency * 1000:.0f} ms and unregistered",
        latency,
        register_ms=round(latency * 1000, 3),
        total_ms=round((time.perf_counter() - start) * 1000, 3),
        algorithm=d.challenge.algorithm if d.challenge else "none",
        binding_confirmed=bound,
        statuses=tuple(d.statuses),
        **_where(dest),
    )


def _where(dest: Destination | None) -> dict[str, str]:
    return {} if dest is None else {"transport": dest.transport, "address": str(dest)}


async def probe(cfg: Config, deadline: float) -> Observation:
    """Register, answer the digest challenge, unregister; never raises except on cancel."""
    return await _run(cfg, deadline, _NO_TRACE)


async def probe_verbose(cfg: Config, deadline: float) -> tuple[Observation, list[str]]:
    """probe() plus the transcript (digest responses redacted)."""
    trace = Transcript(True)
    obs = await _run(cfg, deadline, trace)
    return obs, trace.lines or []


_NO_TRACE = Transcript(False)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Any failed stage is critical (503 degraded, 404-like config low); slow degraded."""
    if not obs.ok:
        severity = cfg.severity_by_failure.get(obs.failure) or cfg.on_failure
        return Verdict(severity or default_severity(obs.failure), obs.failure, obs.detail)
    if cfg.degraded_after is not None and obs.duration_s > cfg.degraded_after:
        return Verdict(
            cfg.severity_by_failure.get(FailureClass.SLOW, Severity.DEGRADED),
            FailureClass.SLOW,
            f"registration took {obs.duration_s * 1000:.0f} ms"
            f" (limit {cfg.degraded_after * 1000:.0f} ms)",
        )
    return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
