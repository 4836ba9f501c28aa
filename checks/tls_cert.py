"""`tls_cert` check: days until the served certificate expires, with two thresholds."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from checks.base import CheckConfig, failure_verdict
from checks.errors import classify_exception
from checks.tcp import connect_once, split_host_port, tls_context
from nocd.model import FailureClass, Observation, Severity, Verdict


class Config(CheckConfig):
    """Config of a `tls_cert` check."""

    type: Literal["tls_cert"]
    target: str
    server_name: str | None = None
    ca_file: str | None = None
    tls_verify: bool = True
    degraded_days: float = Field(21.0, ge=0)
    critical_days: float = Field(7.0, ge=0)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_host_port(v)
        return v

    @model_validator(mode="after")
    def _order(self) -> Config:
        if self.critical_days > self.degraded_days:
            raise ValueError("critical_days must not exceed degraded_days")
        return self


async def probe(cfg: Config, deadline: float) -> Observation:
    """Handshake, read the peer certificate's notAfter; never raises except on cancel."""
    host, port = split_host_port(cfg.target)
    start = time.perf_counter()
    try:
        ctx = tls_context(cfg.tls_verify, cfg.ca_file)
        facts = await connect_once(host, port, ctx, cfg.server_name, deadline)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        fc, detail = classify_exception(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    cert, der = facts.get("cert"), facts.get("der")
    elapsed = time.perf_counter() - start
    not_after = _not_after(
        cert if isinstance(cert, dict) else None, der if isinstance(der, bytes) else None
    )
    if not_after is None:
        return Observation.failed(FailureClass.TLS, "no peer certificate", elapsed)
    days = (not_after - time.time()) / 86400.0
    return Observation.success(
        f"certificate expires in {days:.1f} days",
        elapsed,
        days_left=round(days, 3),
        not_after=not_after,
    )


def _not_after(cert: dict[str, object] | None, der: bytes | None) -> float | None:
    if cert and isinstance(cert.get("notAfter"), str):
        return float(ssl.cert_time_to_seconds(str(cert["notAfter"])))
    if der:
        # With verification off, getpeercert() is empty: parse the DER ourselves.
        from cryptography import x509

        return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    return None


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Handshake failure → critical; below critical_days → critical; below degraded → degraded."""
    if not obs.ok:
        return failure_verdict(obs, cfg, Severity.CRITICAL)
    days = float(obs.values["days_left"])
    if days <= cfg.critical_days:
        sev = Severity.CRITICAL
    elif days <= cfg.degraded_days:
        sev = Severity.DEGRADED
    else:
        return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
    reason = f"certificate expires in {days:.1f} days" if days > 0 else "certificate expired"
    return Verdict(sev, FailureClass.EXPIRING, reason)
