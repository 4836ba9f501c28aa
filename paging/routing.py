"""Routing policy (pure): severity × support hours × customer/site route → page, ticket, digest.

Contract for the lead:
    decide(severity, site, customer, now, paging, calendars) -> RoutingDecision
    check_calendars(paging, calendars) -> None     # call at config load; raises ValueError

The rules (DOMAIN.md):
- critical outside support hours → page on-call now (and a ticket);
- critical inside support hours → ticket to the support queue; page too when the route
  says `page_in_hours: true`;
- degraded → ticket; when raised outside hours and the route has `digest: true`, also held
  for a digest sent when support hours next open (unless resolved by then);
- low / unknown → ticket; ok → nothing.
The route is `routing.sites[site]`, else `routing.customers[customer]`, else the default,
field by field. An unknown calendar name counts as *closed* so a critical still pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from nocd.calendar_config import CalendarConfig
from nocd.model import Severity
from paging.config import PagingConfig, Route
from paging.hours import NoTransition, UnknownCalendar, is_open, next_open, resolve


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """What to do about an incident, and why (the reason goes on the timeline)."""

    page_now: bool
    ticket: bool
    digest: bool
    policy: str | None
    reason: str
    route: str = "default"
    in_hours: bool = True
    digest_at: float | None = None  # epoch seconds when the digest is due
    digest_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EffectiveRoute:
    """A route with every field filled from the default."""

    name: str
    support_hours: str
    escalation_policy: str | None
    page_in_hours: bool
    digest: bool
    digest_to: tuple[str, ...]


def route_for(paging: PagingConfig, site: str | None, customer: str | None) -> EffectiveRoute:
    """The effective route of a site/customer: site overrides customer overrides default."""
    layers: list[tuple[str, Route]] = [("default", paging.routing.default)]
    name = "default"
    if customer is not None and customer in paging.routing.customers:
        name = f"customer:{customer}"
        layers.append((name, paging.routing.customers[customer]))
    if site is not None and site in paging.routing.sites:
        name = f"site:{site}"
        layers.append((name, paging.routing.sites[site]))

    def pick(field: str, default: object) -> object:
        value = default
        for _, r in layers:
            v = getattr(r, field)
            if v is not None:
                value = v
        return value

    policy = pick("escalation_policy", None)
    digest_to = pick("digest_to", ())
    return EffectiveRoute(
        name=name,
        support_hours=str(pick("support_hours", "24x7")),
        escalation_policy=policy if isinstance(policy, str) else None,
        page_in_hours=bool(pick("page_in_hours", False)),
        digest=bool(pick("digest", True)),
        digest_to=tuple(digest_to) if isinstance(digest_to, tuple) else (),
    )


def check_calendars(paging: PagingConfig, calendars: Mapping[str, CalendarConfig]) -> None:
    """Raise ValueError when a route names a support-hours calendar that does not exist."""
    routes = [("default", paging.routing.default)]
    routes += [(f"customer {k}", r) for k, r in paging.routing.customers.items()]
    routes += [(f"site {k}", r) for k, r in paging.routing.sites.items()]
    for where, r in routes:
        if r.support_hours is not None and r.support_hours != "24x7":
            if r.support_hours not in calendars:
                have = ", ".join(sorted(calendars)) or "none defined"
                raise ValueError(
                    f"paging.routing {where}: unknown support_hours {r.support_hours!r} "
                    f"(known: 24x7, {have})"
                )


def decide(
    severity: Severity,
    site: str | None,
    customer: str | None,
    now: float,
    paging: PagingConfig,
    calendars: Mapping[str, CalendarConfig],
) -> RoutingDecision:
    """Decide paging/ticket/digest for an incident of `severity` raised at `now` (epoch s)."""
    route = route_for(paging, site, customer)
    t = datetime.fromtimestamp(now, UTC)
    hours = route.support_hours
    try:
        cal = resolve(calendars, hours)
        open_now = is_open(cal, t)
        unknown = ""
    except UnknownCalendar:
        cal, open_now, unknown = None, False, f" (calendar {hours!r} unknown: treated as closed)"
    where = f"{'inside' if open_now else 'outside'} support hours {hours}{unknown}"
    policy = route.escalation_policy

    def made(page: bool, why: str, pol: str | None = None) -> RoutingDecision:
        return RoutingDecision(page, True, False, pol, why, route.name, open_now)

    if severity is Severity.CRITICAL:
        if not open_now:
            return made(True, f"critical {where}: page on-call now via policy {policy}", policy)
        if route.page_in_hours:
            why = f"critical {where}: ticket to the support queue and page (page_in_hours)"
            return made(True, why, policy)
        return made(False, f"critical {where}: ticket to the support queue, no page")
    if severity is Severity.DEGRADED:
        if open_now:
            return made(False, f"degraded {where}: ticket only")
        if not route.digest:
            return made(False, f"degraded {where}: ticket only, waits for the next working day")
        try:
            due = next_open(cal, t).timestamp() if not unknown else now
        except NoTransition:
            due = now
        why = (
            f"degraded {where}: ticket, no page; held for the digest at "
            f"{datetime.fromtimestamp(due, UTC).strftime('%Y-%m-%d %H:%MZ')} unless resolved"
        )
        return RoutingDecision(
            False, True, True, None, why, route.name, open_now, due, route.digest_to
        )
    if severity in (Severity.LOW, Severity.UNKNOWN):
        return made(False, f"{severity.value} {where}: ticket only")
    return RoutingDecision(False, False, False, None, "ok: nothing to do", route.name, open_now)
