"""`snmp_trap` check (passive): a rule mapping a trap OID plus varbind conditions to a result."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from checks.base import CheckConfig
from checks.snmp_common import check_oid
from nocd.duration import Duration
from nocd.inventory import Strict
from nocd.model import FailureClass, Observation, Severity, Verdict

PASSIVE_DETAIL = "passive check: results come from SNMP traps, it is never probed"


@dataclass(frozen=True, slots=True)
class Trap:
    """One received notification, reduced to what rules look at."""

    source: str  # sender's IP address
    trap_oid: str
    varbinds: Mapping[str, str] = field(default_factory=dict)  # OID → value as text
    version: str = "2c"
    inform: bool = False


class VarbindCondition(Strict):
    """A condition on a varbind; `oid` also matches table instances below it."""

    oid: str
    name: str | None = Field(None, description="name for the value in the message")
    equals: str | int | None = None
    not_equals: str | int | None = None
    matches: str | None = Field(None, description="regular expression (search)")
    above: float | None = None
    below: float | None = None

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str) -> str:
        return check_oid(v)

    @field_validator("matches")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return v

    def value_in(self, varbinds: Mapping[str, str]) -> str | None:
        """The value of the first varbind at or below this OID."""
        if self.oid in varbinds:
            return varbinds[self.oid]
        prefix = self.oid + "."
        return next((v for k, v in varbinds.items() if k.startswith(prefix)), None)

    @property
    def has_tests(self) -> bool:
        """True when this condition tests the value (not only names it)."""
        tests = (self.equals, self.not_equals, self.matches, self.above, self.below)
        return any(t is not None for t in tests)

    def holds(self, varbinds: Mapping[str, str]) -> bool:
        """True when the varbind is present and satisfies every given test."""
        value = self.value_in(varbinds)
        if value is None:
            # A condition without tests only names a value for the message.
            return not self.has_tests
        if self.equals is not None and value != str(self.equals):
            return False
        if self.not_equals is not None and value == str(self.not_equals):
            return False
        if self.matches is not None and not re.search(self.matches, value):
            return False
        if self.above is not None or self.below is not None:
            try:
                number = float(value)
            except ValueError:
                return False
            if self.above is not None and not number > self.above:
                return False
            if self.below is not None and not number < self.below:
                return False
        return True


class Config(CheckConfig):
    """Config of an `snmp_trap` rule: which trap opens it, which trap or timeout clears it."""

    passive: ClassVar[bool] = True

    type: Literal["snmp_trap"]
    trap_oid: str
    varbinds: tuple[VarbindCondition, ...] = ()
    sources: tuple[str, ...] = Field((), description="sender IPs or CIDRs; empty: any sender")
    severity: Severity = Severity.CRITICAL
    message: str | None = Field(None, description="text with {source}, {trap_oid}, {<name>}")
    clear_oid: str | None = None
    clear_varbinds: tuple[VarbindCondition, ...] = ()
    clear_after: Duration | None = Field(None, description="resolve when no new trap this long")

    @field_validator("trap_oid", "clear_oid")
    @classmethod
    def _oid(cls, v: str | None) -> str | None:
        return None if v is None else check_oid(v)

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            try:
                ipaddress.ip_network(s, strict=False)
            except ValueError:
                raise ValueError(f"{s!r} is not an IP address or network") from None
        return v

    @model_validator(mode="after")
    def _clear(self) -> Config:
        if self.severity is Severity.OK:
            raise ValueError("a trap rule's severity cannot be ok")
        if self.clear_varbinds and self.clear_oid is None:
            raise ValueError("clear_varbinds needs clear_oid")
        if self.clear_after is not None and self.clear_after < 1:
            raise ValueError("clear_after must be at least 1s")
        return self

    def from_source(self, source: str) -> bool:
        """True when `source` may send this rule's traps."""
        if not self.sources:
            return True
        try:
            addr = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(s, strict=False) for s in self.sources)


def match(cfg: Config, trap: Trap) -> Literal["fire", "clear"] | None:
    """Whether `trap` opens this rule's result, clears it, or is none of its business."""
    if not cfg.from_source(trap.source):
        return None
    if trap.trap_oid == cfg.trap_oid and all(c.holds(trap.varbinds) for c in cfg.varbinds):
        return "fire"
    if trap.trap_oid == cfg.clear_oid and all(c.holds(trap.varbinds) for c in cfg.clear_varbinds):
        return "clear"
    return None


def message(cfg: Config, trap: Trap) -> str:
    """The human text for a firing rule (configured template or a default)."""
    fields: dict[str, Any] = {"source": trap.source, "trap_oid": trap.trap_oid}
    for cond in cfg.varbinds:
        if cond.name:
            fields[cond.name] = cond.value_in(trap.varbinds) or ""
    if cfg.message is None:
        return f"SNMP trap {trap.trap_oid} from {trap.source}"
    return cfg.message.format_map(_Blank(fields))


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fired(cfg: Config, trap: Trap) -> Observation:
    """The observation a firing trap becomes."""
    return Observation.failed(
        FailureClass.EXTERNAL,
        message(cfg, trap),
        source=trap.source,
        trap_oid=trap.trap_oid,
        varbinds=dict(trap.varbinds),
        severity=cfg.severity.value,
    )


def cleared(trap: Trap | None, after: float | None = None) -> Observation:
    """The observation a clearing trap (or the clear_after timeout) becomes."""
    if trap is not None:
        return Observation.success(
            f"cleared by trap {trap.trap_oid} from {trap.source}",
            source=trap.source,
            trap_oid=trap.trap_oid,
        )
    return Observation.success(f"cleared: no new trap for {after or 0:g}s")


async def probe(cfg: Config, deadline: float) -> Observation:
    """Passive checks are fed by the trap receiver; this only says so."""
    return Observation.failed(FailureClass.INTERNAL, PASSIVE_DETAIL, passive=True)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """A firing trap has the rule's severity; a cleared one is ok."""
    if obs.values.get("passive"):
        return Verdict(Severity.UNKNOWN, FailureClass.NONE, obs.detail)
    if obs.ok:
        return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
    return Verdict(cfg.on_failure or cfg.severity, FailureClass.EXTERNAL, obs.detail)
