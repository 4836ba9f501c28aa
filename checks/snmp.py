"""`snmp` check: one GET of several OIDs (v2c or v3), judged per OID; detects device restarts."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from checks import snmp_ber, snmp_v2c, snmp_v3
from checks.base import CheckConfig, time_left
from checks.errors import classify_exception
from checks.resources import shared
from checks.snmp_ber import Plain, Reply
from checks.snmp_common import (
    SYS_UPTIME,
    V3Credentials,
    check_oid,
    split_target,
)
from checks.snmp_v2c import NoValidReply
from checks.snmp_v3 import SnmpFailure
from nocd.duration import Duration, format_duration
from nocd.inventory import Strict
from nocd.model import FailureClass, Observation, Severity, Verdict, worst
from nocd.secrets import Secret

MAX_CONCURRENT = 64  # bursts of ~200 overflow snmpd's receive buffer (PITFALLS)
UPTIME_WRAP = 1 << 32  # sysUpTime is TimeTicks (1/100 s), wraps after ~497 days


class OidCondition(Strict):
    """One OID to read and how to judge its value."""

    oid: str
    name: str | None = Field(None, description="label used in values and metrics")
    equals: int | float | str | None = None
    not_equals: int | float | str | None = None
    on_mismatch: Severity = Severity.CRITICAL
    degraded_above: float | None = None
    critical_above: float | None = None
    degraded_below: float | None = None
    critical_below: float | None = None

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str) -> str:
        return check_oid(v)

    @property
    def key(self) -> str:
        """The name under which this OID's value is reported."""
        return self.name or self.oid


class Config(CheckConfig):
    """Config of an `snmp` check."""

    type: Literal["snmp"]
    target: str
    version: Literal["2c", "3"] = "2c"
    community: Secret | None = None
    v3: V3Credentials | None = None
    oids: tuple[OidCondition, ...] = ()
    snmp_retries: int = Field(1, ge=0, le=5, description="resends within the probe timeout")
    detect_restart: bool = True
    on_restart: Severity = Severity.DEGRADED
    restart_hold: Duration = Field(900.0, description="report a restart until up this long")

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_target(v, 161)
        return v

    @model_validator(mode="after")
    def _auth(self) -> Config:
        if self.version == "2c" and self.community is None:
            raise ValueError("SNMP v2c needs a community ('${ENV}' or 'file:/path')")
        if self.version == "3" and self.v3 is None:
            raise ValueError("SNMP v3 needs a v3: section (user, auth/priv protocols and keys)")
        if not self.oids and not self.detect_restart:
            raise ValueError("nothing to read: give oids or keep detect_restart")
        keys = [o.key for o in self.oids]
        if len(set(keys)) != len(keys):
            raise ValueError("every OID needs a distinct name")
        return self


class UptimeBook:
    """Last sysUpTime seen per check, so a probe can tell that a device restarted."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, float]] = {}  # check → (ticks, loop time)
        self.restarted: dict[str, int] = {}  # check → uptime ticks before the restart

    def record(self, check: str, ticks: int, now: float, hold: float) -> int | None:
        """Store `ticks`; return the pre-restart uptime while a restart is being reported."""
        prev = self.last.get(check)
        self.last[check] = (ticks, now)
        if prev is not None and ticks < prev[0] and not _wrapped(prev, ticks, now):
            self.restarted[check] = prev[0]
        if check in self.restarted and ticks >= hold * 100:
            del self.restarted[check]
        return self.restarted.get(check)


def _wrapped(prev: tuple[int, float], ticks: int, now: float) -> bool:
    # A 32-bit counter wrap looks like a restart; it is one only if the ticks don't add up.
    expected = (prev[0] + int((now - prev[1]) * 100)) % UPTIME_WRAP
    return prev[0] > UPTIME_WRAP - (now - prev[1] + 60) * 100 and abs(expected - ticks) < 6000


def uptime_book() -> UptimeBook:
    """The running loop's uptime book."""

    async def _noop(_: UptimeBook) -> None:
        return None

    return shared("snmp.uptimes", UptimeBook, _noop)


def _semaphore() -> asyncio.Semaphore:
    async def _noop(_: asyncio.Semaphore) -> None:
        return None

    return shared("snmp.semaphore", lambda: asyncio.Semaphore(MAX_CONCURRENT), _noop)


def _oid_list(cfg: Config) -> list[str]:
    oids = [o.oid for o in cfg.oids]
    if cfg.detect_restart and SYS_UPTIME not in oids:
        oids.append(SYS_UPTIME)
    return oids


async def probe(cfg: Config, deadline: float) -> Observation:
    """GET the configured OIDs in one request; never raises except on cancellation."""
    obs, _ = await probe_verbose(cfg, deadline)
    return obs


async def probe_verbose(cfg: Config, deadline: float) -> tuple[Observation, list[str]]:
    """Probe, also returning a transcript of the request and the values read."""
    start = time.perf_counter()
    host, port = split_target(cfg.target, 161)
    oids = _oid_list(cfg)
    lines = [f"SNMP v{cfg.version} GET {host}:{port} {' '.join(oids)}"]
    sem = _semaphore()
    result: Reply | BaseException
    try:
        if sem.locked():  # only a full semaphore needs a timer to bound the wait
            async with asyncio.timeout(time_left(deadline)):
                await sem.acquire()
        else:
            await sem.acquire()
        try:
            if cfg.version == "2c":
                result = await _get_v2c(cfg, host, port, oids, deadline)
            else:
                result = await snmp_v3.get(cfg, host, port, oids, deadline)
        finally:
            sem.release()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe never raises (design rule)
        result = exc
    return _finish(cfg, oids, result, time.perf_counter() - start, lines), lines


def start(cfg: Config, deadline: float, done: Callable[[Observation], None]) -> bool:
    """Start a v2c GET without a task; `done(obs)` follows from the event loop.

    The scheduler's fast path (checks.base.StartFn): the same GET, resends, matching and
    Observation as probe(). Returns False, having done nothing, when the coroutine path is
    needed: v3, a target given by name, the socket not open yet, or MAX_CONCURRENT GETs
    already in flight on it.
    """
    if cfg.version != "2c" or cfg.community is None:
        return False
    host, port = split_target(cfg.target, 161)
    found = snmp_v2c.numeric(host, port)
    if found is None:
        return False
    client = snmp_v2c.sockets().clients.get(found[0])
    if client is None or client.transport is None or len(client.pending) >= MAX_CONCURRENT:
        return False
    began = time.perf_counter()
    oids = _oid_list(cfg)
    tpl = snmp_ber.template(cfg.community.get_secret_value().encode(), tuple(oids))

    def finished(result: Reply | BaseException) -> None:
        done(_finish(cfg, oids, result, time.perf_counter() - began, []))

    client.start(tpl, found[1], deadline, cfg.snmp_retries + 1, finished)
    return True


def _finish(
    cfg: Config, oids: list[str], result: Reply | BaseException, elapsed: float, lines: list[str]
) -> Observation:
    """The Observation of a GET's reply or failure (transcript lines added to `lines`)."""
    if isinstance(result, TimeoutError):
        lines.append(f"no reply within {elapsed:.2f}s")
        return Observation.failed(FailureClass.TIMEOUT, _timeout_detail(cfg), elapsed)
    if isinstance(result, BaseException):
        fc, detail = _exception_class(result)
        lines.append(f"error: {detail}")
        return Observation.failed(fc, detail, elapsed)
    if result.status:
        i = result.index
        bad = oids[i - 1] if 0 < i <= len(oids) else "?"
        detail = f"agent returned {result.status_name} for {bad}"
        lines.append(detail)
        return Observation.failed(FailureClass.BAD_STATUS, detail, elapsed)
    return _observe(cfg, oids, result.varbinds, elapsed, lines)


async def _get_v2c(cfg: Config, host: str, port: int, oids: list[str], deadline: float) -> Reply:
    assert cfg.community is not None
    tpl = snmp_ber.template(cfg.community.get_secret_value().encode(), tuple(oids))
    found = snmp_v2c.numeric(host, port)
    if found is None:  # a name: bound the lookup by the deadline
        async with asyncio.timeout(time_left(deadline)):
            found = await snmp_v2c.resolve(host, port)
    family, addr = found
    client = await snmp_v2c.sockets().client(family)
    return await client.get(tpl, addr, deadline, cfg.snmp_retries + 1)


def _observe(
    cfg: Config,
    oids: Sequence[str],
    var_binds: Sequence[tuple[str, Plain]],
    elapsed: float,
    lines: list[str],
) -> Observation:
    by_oid: dict[str, Any] = {}
    missing: list[str] = []
    for oid, (text, number, absent) in var_binds:
        lines.append(f"  {oid} = {text}")
        if absent:
            missing.append(oid)
        by_oid[oid] = number if number is not None else text
    # An agent answers the OIDs asked (RFC 3416 §4.2.1); a reply about others (a confused
    # agent, or a forged datagram that guessed the request-id) proves nothing about ours.
    unanswered = [o for o in oids if o not in by_oid]
    if unanswered:
        detail = f"reply lacks the OIDs asked: {', '.join(unanswered[:5])}"
        lines.append(detail)
        return Observation.failed(FailureClass.PROTOCOL, detail, elapsed)
    numbers: dict[str, float | int] = {}
    texts: dict[str, str] = {}
    for cond in cfg.oids:
        v = by_oid.get(cond.oid)
        if isinstance(v, int | float):
            numbers[cond.key] = v
        elif v is not None and cond.oid not in missing:
            texts[cond.key] = v
    values: dict[str, Any] = {"oids": numbers, "text": texts}
    uptime = by_oid.get(SYS_UPTIME)
    if cfg.detect_restart and isinstance(uptime, int) and SYS_UPTIME not in missing:
        values["sys_uptime"] = uptime / 100.0
        now = asyncio.get_running_loop().time()
        before = uptime_book().record(cfg.name, uptime, now, cfg.restart_hold)
        if before is not None:
            values["restarted"] = True
            values["previous_uptime"] = before / 100.0
    lines.append(f"reply in {elapsed * 1000:.1f} ms")
    wanted_missing = [o for o in missing if o in {c.oid for c in cfg.oids}]
    if wanted_missing:
        return Observation.failed(
            FailureClass.CONFIG,
            f"OID not present on the device: {', '.join(wanted_missing)}",
            elapsed,
            **values,
        )
    return Observation.success(
        f"{len(by_oid)} values in {elapsed * 1000:.0f} ms", elapsed, **values
    )


def _timeout_detail(cfg: Config) -> str:
    if cfg.version == "2c":
        return "no SNMP reply (device down, or wrong community: v2c agents stay silent)"
    return (
        "no SNMP reply (device down, or wrong v3 privacy key: agents drop what they cannot decrypt)"
    )


def _exception_class(exc: BaseException) -> tuple[FailureClass, str]:
    text = str(exc)
    if "transport address" in text:
        return FailureClass.DNS, f"cannot resolve SNMP target: {re.sub(r'.*: ', '', text)}"
    if "Ciphering services not available" in text:
        return FailureClass.INTERNAL, "SNMP privacy needs the 'cryptography' package"
    if isinstance(exc, SnmpFailure):
        return exc.failure, exc.detail
    if isinstance(exc, NoValidReply):
        return FailureClass.PROTOCOL, f"malformed SNMP reply: {exc}"
    if isinstance(exc, socket.gaierror):
        return FailureClass.DNS, f"cannot resolve SNMP target: {exc.strerror}"
    return classify_exception(exc)


def _judge(cond: OidCondition, value: Any) -> tuple[Severity, FailureClass, str] | None:
    key = cond.key
    if cond.equals is not None and not _same(value, cond.equals):
        return cond.on_mismatch, FailureClass.CONTENT, f"{key} is {value}, expected {cond.equals}"
    if cond.not_equals is not None and _same(value, cond.not_equals):
        return cond.on_mismatch, FailureClass.CONTENT, f"{key} is {value}"
    if not isinstance(value, int | float):
        if any(
            x is not None
            for x in (
                cond.critical_above,
                cond.degraded_above,
                cond.critical_below,
                cond.degraded_below,
            )
        ):
            return Severity.DEGRADED, FailureClass.CONTENT, f"{key} is not a number: {value!r}"
        return None
    for limit, sev, word in (
        (cond.critical_above, Severity.CRITICAL, "above"),
        (cond.critical_below, Severity.CRITICAL, "below"),
        (cond.degraded_above, Severity.DEGRADED, "above"),
        (cond.degraded_below, Severity.DEGRADED, "below"),
    ):
        if limit is not None and (value > limit if word == "above" else value < limit):
            return sev, FailureClass.THRESHOLD, f"{key} is {value:g}, {word} {limit:g}"
    return None


def _same(value: Any, expected: int | float | str) -> bool:
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return float(value) == float(expected)
    return str(value) == str(expected)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Unreachable → critical; auth/config trouble → degraded; then per-OID conditions."""
    if not obs.ok:
        default = (
            Severity.DEGRADED
            if obs.failure in (FailureClass.AUTH, FailureClass.CONFIG, FailureClass.PROTOCOL)
            else Severity.CRITICAL
        )
        return Verdict(cfg.on_failure or default, obs.failure, obs.detail)
    found: list[tuple[Severity, FailureClass, str]] = []
    if obs.values.get("restarted"):
        found.append(
            (
                cfg.on_restart,
                FailureClass.RESTARTED,
                "device restarted: uptime "
                f"{format_duration(obs.values.get('sys_uptime', 0.0))}, was "
                f"{format_duration(obs.values.get('previous_uptime', 0.0))}",
            )
        )
    numbers = obs.values.get("oids", {})
    texts = obs.values.get("text", {})
    for cond in cfg.oids:
        value = numbers.get(cond.key, texts.get(cond.key))
        if value is not None and (res := _judge(cond, value)) is not None:
            found.append(res)
    if not found:
        return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
    severity = worst(*(f[0] for f in found))
    first = next(f for f in found if f[0] is severity)
    return Verdict(severity, first[1], "; ".join(f[2] for f in found))
