"""Pure grouping logic: which incident a check belongs to, and an incident's severity.

Aggregate rules select checks by name, `type:TYPE`, `label:KEY=VALUE` or `*`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checks.base import CheckConfig
from nocd.config import Config
from nocd.incidents.config import AggregateRule
from nocd.model import Severity, worst


def group_key(check: CheckConfig, cfg: Config) -> str:
    """The incident group of a check under `incidents.group_by` (falls back to the check)."""
    by = cfg.incidents.group_by
    if by == "site" and check.site:
        return f"site:{check.site}"
    if by == "device" and check.device:
        return f"device:{check.site}/{check.device}"
    if by == "customer" and check.site:
        customer = cfg.sites[check.site].customer if check.site in cfg.sites else None
        if customer:
            return f"customer:{customer}"
    if by.startswith("label:"):
        key = by[6:]
        value = check.labels.get(key) or (
            cfg.sites[check.site].labels.get(key) if check.site in cfg.sites else None
        )
        if value:
            return f"label:{key}={value}"
    return f"check:{check.name}"


def selects(selector: str, check: CheckConfig) -> bool:
    """Whether `selector` (name, `type:X`, `label:K=V`, `*`) picks `check`."""
    if selector == "*":
        return True
    if selector.startswith("type:"):
        return check.type == selector[5:]
    if selector.startswith("label:"):
        key, _, value = selector[6:].partition("=")
        return check.labels.get(key) == value
    return check.name == selector


@dataclass(frozen=True, slots=True)
class MemberView:
    """What rules see of one check in the group."""

    check: CheckConfig
    severity: Severity  # hard severity (OK when up)
    unreachable: bool = False  # a parent it depends on is down
    expected: int | None = None  # phones expected (sip_registrations)
    missing: int | None = None  # phones missing


def _matching(selectors: Sequence[str], members: Sequence[MemberView]) -> list[MemberView]:
    return [m for m in members if any(selects(s, m.check) for s in selectors)]


def rule_holds(rule: AggregateRule, members: Sequence[MemberView]) -> bool:
    """Whether one aggregate rule's condition holds over the group's members."""
    failing = [m for m in members if m.severity is not Severity.OK and not m.unreachable]
    if rule.any_failing and _matching(rule.any_failing, failing):
        return True
    if rule.all_failing:
        chosen = _matching(rule.all_failing, members)
        if chosen and all(m.severity is not Severity.OK and not m.unreachable for m in chosen):
            return True
    if rule.failing_ratio is not None:
        chosen = _matching(rule.of, members)
        bad = [m for m in chosen if m.severity is not Severity.OK and not m.unreachable]
        if chosen and len(bad) / len(chosen) >= rule.failing_ratio:
            return True
    if rule.missing_ratio is not None:
        chosen = [m for m in _matching(rule.of, members) if m.expected]
        expected = sum(m.expected or 0 for m in chosen)
        missing = sum(m.missing or 0 for m in chosen)
        if expected and missing / expected >= rule.missing_ratio:
            return True
    return False


def aggregate_severity(rules: Sequence[AggregateRule], members: Sequence[MemberView]) -> Severity:
    """An incident's severity: the worst matching rule, else the worst reachable member."""
    reachable = [m.severity for m in members if not m.unreachable]
    if not any(s is not Severity.OK for s in reachable):
        return Severity.OK
    matched = [r.severity for r in rules if rule_holds(r, members)]
    if matched:
        return worst(*matched)
    return worst(*reachable)


def failing_parents(
    check: CheckConfig, down: Mapping[str, bool], parents_of: Mapping[str, Sequence[str]]
) -> list[str]:
    """The checks `check` depends on (transitively) that are down now, nearest first."""
    out: list[str] = []
    seen: set[str] = set()
    frontier = list(parents_of.get(check.name, ()))
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if down.get(name, False):
            out.append(name)
        frontier.extend(parents_of.get(name, ()))
    return out
