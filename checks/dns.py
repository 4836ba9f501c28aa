"""`dns` check: resolve a name (A/AAAA/SRV/NAPTR …) at a chosen resolver; expected answers, latency."""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rcode
import dns.resolver
from pydantic import Field, field_validator

from checks.base import CheckConfig, failure_verdict, success_verdict, time_left
from checks.errors import classify_exception
from checks.snmp_common import split_target
from nocd.duration import Duration
from nocd.model import FailureClass, Observation, Severity, Verdict

RecordType = Literal["A", "AAAA", "SRV", "NAPTR", "CNAME", "MX", "TXT", "NS", "PTR", "SOA"]


class Config(CheckConfig):
    """Config of a `dns` check; `target` is the name to query (e.g. _sip._udp.example.com)."""

    type: Literal["dns"]
    target: str
    record_type: RecordType = "A"
    resolver: str | None = Field(None, description="IP[:port] of the resolver; default: system")
    tcp: bool = False
    expect: tuple[str, ...] = Field((), description="answers that must be present")
    expect_exactly: bool = Field(False, description="…and no others")
    degraded_after: Duration | None = Field(None, description="answer slower than this: degraded")

    @field_validator("target")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            dns.name.from_text(v)
        except dns.exception.DNSException as exc:
            raise ValueError(f"invalid DNS name {v!r}: {exc}") from None
        return v

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, v: str | None) -> str | None:
        if v is not None:
            host, _ = split_target(v, 53)
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError("resolver must be an IP address (optionally :port)") from None
        return v


def normalize(answer: str) -> str:
    """Canonical text of an answer so `sip1.example.com` matches `SIP1.example.com.`."""
    tokens = []
    for tok in answer.split():
        tok = tok.strip('"').rstrip(".").lower()
        try:
            tok = str(ipaddress.ip_address(tok))
        except ValueError:
            pass
        tokens.append(tok)
    return " ".join(tokens)


def _resolver(cfg: Config) -> dns.asyncresolver.Resolver:
    if cfg.resolver is None:
        return dns.asyncresolver.Resolver()  # /etc/resolv.conf, read per probe
    host, port = split_target(cfg.resolver, 53)
    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers = [host]
    res.port = port
    return res


async def probe(cfg: Config, deadline: float) -> Observation:
    """Resolve once; never raises except on cancellation."""
    start = time.perf_counter()
    values: dict[str, Any] = {"record_type": cfg.record_type}
    try:
        answer = await _resolver(cfg).resolve(
            cfg.target,
            cfg.record_type,
            tcp=cfg.tcp,
            lifetime=max(0.01, time_left(deadline)),
            raise_on_no_answer=False,
            search=False,
        )
    except dns.resolver.NXDOMAIN:
        return Observation.failed(
            FailureClass.DNS, f"{cfg.target} does not exist (NXDOMAIN)", _since(start), **values
        )
    except dns.resolver.LifetimeTimeout:
        return Observation.failed(FailureClass.TIMEOUT, "no DNS answer in time", _since(start))
    except dns.resolver.NoNameservers as exc:
        return Observation.failed(
            FailureClass.SERVER_ERROR, f"resolver failed: {_rcodes(exc)}", _since(start), **values
        )
    except dns.exception.DNSException as exc:
        return Observation.failed(FailureClass.PROTOCOL, f"DNS error: {exc}", _since(start))
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, _since(start))
    elapsed = _since(start)
    answers = [r.to_text() for r in answer.rrset] if answer.rrset is not None else []
    values["answers"] = answers
    values["ttl"] = answer.rrset.ttl if answer.rrset is not None else None
    if not answers:
        return Observation.failed(
            FailureClass.CONTENT,
            f"no {cfg.record_type} records for {cfg.target}",
            elapsed,
            **values,
        )
    got = {normalize(a) for a in answers}
    want = {normalize(e) for e in cfg.expect}
    missing = sorted(want - got)
    if missing:
        return Observation.failed(
            FailureClass.CONTENT, f"missing from answer: {', '.join(missing)}", elapsed, **values
        )
    extra = sorted(got - want)
    if cfg.expect_exactly and extra:
        return Observation.failed(
            FailureClass.CONTENT, f"unexpected in answer: {', '.join(extra)}", elapsed, **values
        )
    return Observation.success(
        f"{len(answers)} {cfg.record_type} in {elapsed * 1000:.0f} ms", elapsed, **values
    )


def _since(start: float) -> float:
    return time.perf_counter() - start


def _rcodes(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    texts = []
    for err in errors:
        # Each error is (server, tcp, port, exception or answer); keep the rcode or reason.
        detail = err[3] if len(err) > 3 else err
        texts.append(str(detail))
    return "; ".join(texts) or "all resolvers failed"


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """No answer, NXDOMAIN or SERVFAIL → critical; wrong answers or slow → degraded."""
    if not obs.ok:
        default = Severity.DEGRADED if obs.failure is FailureClass.CONTENT else Severity.CRITICAL
        return failure_verdict(obs, cfg, default)
    return success_verdict(obs, cfg.degraded_after, "answer")
