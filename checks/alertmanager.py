"""`alertmanager` check (passive): Alertmanager alerts whose labels match become this result."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from checks.base import CheckConfig
from nocd.model import FailureClass, Observation, Severity, Verdict

PASSIVE_DETAIL = "passive check: results come from Alertmanager webhooks, it is never probed"
_MATCHER = re.compile(
    r"""^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^"\s]*)\s*$"""
)
DEFAULT_SEVERITY_MAP = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "error": Severity.DEGRADED,
    "warning": Severity.DEGRADED,
    "info": Severity.LOW,
    "none": Severity.LOW,
}


@dataclass(frozen=True, slots=True)
class Matcher:
    """One Alertmanager-style label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`."""

    label: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse a matcher; ValueError says what a valid one looks like."""
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f'invalid matcher {text!r}: write label="value", !=, =~ or !~')
        raw = m.group(3)
        value = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw[:1] == '"' else raw
        if m.group(2) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression in {text!r}: {exc}") from None
        return cls(m.group(1), m.group(2), value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager semantics: a missing label is the empty string; regexes are anchored."""
        got = labels.get(self.label, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit


class Config(CheckConfig):
    """Config of an `alertmanager` check: label matchers and how labels map to severity."""

    passive: ClassVar[bool] = True

    type: Literal["alertmanager"]
    matchers: tuple[str, ...] = Field(min_length=1)
    severity_label: str = "severity"
    severity_map: dict[str, Severity] = Field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    default_severity: Severity = Severity.CRITICAL
    site_label: str | None = Field("site", description="label naming the site, if any")

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for text in v:
            Matcher.parse(text)
        return v

    @field_validator("severity_map")
    @classmethod
    def _map(cls, v: dict[str, Severity]) -> dict[str, Severity]:
        if Severity.OK in v.values():
            raise ValueError("a firing alert cannot map to ok")
        return v

    def parsed(self) -> tuple[Matcher, ...]:
        """The matchers, parsed."""
        return tuple(Matcher.parse(t) for t in self.matchers)

    def selects(self, labels: Mapping[str, str]) -> bool:
        """True when every matcher matches these alert labels."""
        return all(m.matches(labels) for m in self.parsed())

    def severity_of(self, labels: Mapping[str, str]) -> Severity:
        """The nocd severity for an alert with these labels."""
        return self.severity_map.get(labels.get(self.severity_label, ""), self.default_severity)


def firing(cfg: Config, alerts: list[tuple[Mapping[str, str], Mapping[str, str]]]) -> Observation:
    """The observation for this check while `alerts` ((labels, annotations) pairs) fire."""
    severities = [cfg.severity_of(labels) for labels, _ in alerts]
    worst_i = max(range(len(alerts)), key=lambda i: severities[i].rank)
    labels, annotations = alerts[worst_i]
    name = labels.get("alertname", "alert")
    text = annotations.get("summary") or annotations.get("description") or ""
    detail = f"{name} firing" + (f": {text}" if text else "")
    if len(alerts) > 1:
        detail += f" (+{len(alerts) - 1} more)"
    values: dict[str, Any] = {
        "severity": severities[worst_i].value,
        "alerts": len(alerts),
        "labels": dict(labels),
    }
    if cfg.site_label and labels.get(cfg.site_label):
        values["site"] = labels[cfg.site_label]
    return Observation.failed(FailureClass.EXTERNAL, detail, **values)


def resolved(alertname: str) -> Observation:
    """The observation once every matching alert has resolved."""
    return Observation.success(f"{alertname} resolved")


async def probe(cfg: Config, deadline: float) -> Observation:
    """Passive checks are fed by the webhook; this only says so."""
    return Observation.failed(FailureClass.INTERNAL, PASSIVE_DETAIL, passive=True)


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """Firing → the severity mapped from the alert's labels; resolved → ok."""
    if obs.values.get("passive"):
        return Verdict(Severity.UNKNOWN, FailureClass.NONE, obs.detail)
    if obs.ok:
        return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
    try:
        severity = Severity(obs.values.get("severity", cfg.default_severity))
    except ValueError:
        severity = cfg.default_severity
    return Verdict(cfg.on_failure or severity, FailureClass.EXTERNAL, obs.detail)
