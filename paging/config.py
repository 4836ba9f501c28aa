"""Config of paging (the `paging:` section): provider, people, schedules, escalation, routing.

Names used across the section (people, schedules, policies) are checked against each other
here, so a typo fails at load with the list of known names. Support-hours calendar names
(`routing.*.support_hours`) live in the top-level `support_hours:` section and are checked by
`paging.routing.check_calendars(config)`; "24x7" means always open.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nocd.calendar_config import DAYS, parse_range
from nocd.duration import Duration
from nocd.inventory import Strict, check_zone
from nocd.secrets import Secret
from paging.digest_mail import DigestEmail

Channel = Literal["voice", "sms"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _name(v: str, what: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{what} {v!r} must be lowercase letters, digits, '-' or '_'")
    return v


def check_e164(v: str) -> str:
    """Validate an E.164 phone number (`+15550100`)."""
    v = v.replace(" ", "").replace("-", "")
    if not _E164.match(v):
        raise ValueError(f"phone number {v!r} must be E.164, e.g. +15550100")
    return v


class Person(Strict):
    """Someone who can be paged."""

    name: str
    phone: str | None = None
    sms: str | None = Field(None, description="SMS number when not the same as phone")

    @field_validator("phone", "sms")
    @classmethod
    def _num(cls, v: str | None) -> str | None:
        return check_e164(v) if v is not None else v

    def number(self, channel: Channel) -> str | None:
        """The number to use on `channel`."""
        return (self.sms or self.phone) if channel == "sms" else self.phone


class Layer(Strict):
    """A rotation of ordered participants; later layers win over earlier ones when active."""

    name: str = "layer"
    rotation: Literal["daily", "weekly", "custom"] = "weekly"
    length: Duration | None = Field(None, description="shift length for rotation: custom")
    start: date = Field(description="the first shift begins on this date at `handoff`")
    handoff: str = "09:00"
    participants: tuple[str, ...]
    restrict: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="weekly HH:MM-HH:MM ranges when this layer applies"
    )

    @field_validator("handoff")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"handoff {v!r} must be HH:MM")
        return v

    @model_validator(mode="after")
    def _check(self) -> Layer:
        if not self.participants:
            raise ValueError("a layer needs at least one participant")
        if self.rotation == "custom" and not self.length:
            raise ValueError("rotation: custom needs `length` (e.g. 12h, 3d)")
        if self.rotation != "custom" and self.length is not None:
            raise ValueError("`length` is only for rotation: custom")
        for day, ranges in self.restrict.items():
            if day not in DAYS:
                raise ValueError(f"unknown weekday {day!r}; use one of {', '.join(DAYS)}")
            for r in ranges:
                parse_range(r)
        return self


class Override(Strict):
    """From `start` to `end`, `person` is on call (wins over every layer)."""

    start: datetime
    end: datetime
    person: str

    @model_validator(mode="after")
    def _order(self) -> Override:
        for t in (self.start, self.end):
            if t.tzinfo is None:
                raise ValueError("override start/end need a zone offset, e.g. 2026-12-24T18:00Z")
        if self.end <= self.start:
            raise ValueError("override end must be after start")
        return self


class Schedule(Strict):
    """An on-call schedule: layers, overrides, and optionally an iCal file of shifts."""

    timezone: str = "UTC"
    layers: tuple[Layer, ...] = ()
    overrides: tuple[Override, ...] = ()
    ical_file: Path | None = Field(
        None, description="iCal shifts whose SUMMARY names a person key or name"
    )
    ical_url: str | None = Field(None, description="an iCal feed of shifts, fetched periodically")
    ical_refresh: Duration = Field(900.0, ge=60.0)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

    @field_validator("ical_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("ical_url must be an http(s):// URL")
        return v

    @model_validator(mode="after")
    def _one_ical(self) -> Schedule:
        if self.ical_file is not None and self.ical_url is not None:
            raise ValueError("give ical_file or ical_url, not both")
        return self


class Step(Strict):
    """One escalation step: who, how, and how long to wait for an ack before the next."""

    people: tuple[str, ...] = ()
    schedules: tuple[str, ...] = ()
    channels: tuple[Channel, ...] = ("voice", "sms")
    wait: Duration = 600.0

    @model_validator(mode="after")
    def _targets(self) -> Step:
        if not self.people and not self.schedules:
            raise ValueError("an escalation step needs people or schedules")
        if not self.channels:
            raise ValueError("an escalation step needs at least one channel")
        return self


class Fallback(Strict):
    """Who is paged once every repeat of the policy went unacknowledged."""

    people: tuple[str, ...]
    channels: tuple[Channel, ...] = ("voice", "sms")


class EscalationPolicy(Strict):
    """Ordered steps, repeated `repeat` extra times, then the fallback contact."""

    steps: tuple[Step, ...] = Field(min_length=1)
    repeat: int = Field(0, ge=0, le=10)
    fallback: Fallback | None = None


class Route(Strict):
    """Routing for a customer or site; unset fields inherit from `routing.default`."""

    support_hours: str | None = None
    escalation_policy: str | None = None
    page_in_hours: bool | None = Field(None, description="critical inside hours pages too")
    digest: bool | None = Field(None, description="hold degraded after-hours for a digest")
    digest_to: tuple[str, ...] | None = None


class RoutingConfig(Strict):
    """The default route and per-customer / per-site overrides (site wins over customer)."""

    default: Route = Route(support_hours="24x7", page_in_hours=False, digest=True, digest_to=())
    customers: dict[str, Route] = Field(default_factory=dict)
    sites: dict[str, Route] = Field(default_factory=dict)


class RateLimits(Strict):
    """Per-recipient caps; pages over a cap wait and are bundled into the next allowed one."""

    window: Duration = 900.0
    voice: int = Field(3, ge=1)
    sms: int = Field(5, ge=1)
    bundle_window: Duration = Field(
        60.0, description="minimum spacing of pages to one person per channel; others bundle"
    )


class TwilioProvider(Strict):
    """Twilio voice and SMS through the official library."""

    type: Literal["twilio"]
    account_sid: Secret
    auth_token: Secret
    from_number: str
    machine_detection: bool = False
    timeout: Duration = 10.0
    api_base_url: str | None = Field(
        None, description="instead of https://api.twilio.com: a regional edge, a proxy, or tests"
    )

    @field_validator("from_number")
    @classmethod
    def _num(cls, v: str) -> str:
        return check_e164(v)

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s?#]+/?$", v):
            raise ValueError(
                "api_base_url must be an http(s):// URL with no path, e.g. https://api.twilio.com"
            )
        return v.rstrip("/") if v else v


class DryRunProvider(Strict):
    """Records pages on the timeline and log instead of sending them (demo, no credentials)."""

    type: Literal["dry_run"]


class PagingConfig(Strict):
    """The `paging:` section."""

    enabled: bool = True
    provider: TwilioProvider | DryRunProvider = Field(
        DryRunProvider(type="dry_run"), discriminator="type"
    )
    people: dict[str, Person] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=dict)
    routing: RoutingConfig = RoutingConfig()
    rate_limits: RateLimits = RateLimits()
    redial: int = Field(0, ge=0, le=3, description="redials of a no-answer call before moving on")
    channel_fallback: bool = Field(True, description="a failed call falls back to SMS and back")
    channel_fallback_after: Duration = Field(
        60.0,
        ge=1.0,
        description="a page the provider still refuses to create (errors, timeouts) this long "
        "after its first attempt also falls back to the other channel, once; it keeps retrying",
    )
    speak_repeat: int = Field(2, ge=1, le=5, description="times the voice prompt is spoken")
    digest_email: DigestEmail | None = Field(None, description="also mail digests here")

    @field_validator("people", "schedules", "escalation_policies")
    @classmethod
    def _keys(cls, v: dict[str, object]) -> dict[str, object]:
        for k in v:
            _name(k, "name")
        return v

    @model_validator(mode="after")
    def _refs(self) -> PagingConfig:
        def need(kind: str, name: str, known: dict[str, object]) -> None:
            if name not in known:
                have = ", ".join(sorted(known)) or "none defined"
                raise ValueError(f"unknown {kind} {name!r} (known: {have})")

        for pkey, person in self.people.items():
            if person.phone is None and person.sms is None:
                raise ValueError(f"person {pkey!r} needs a phone or sms number")
        people: dict[str, object] = dict(self.people)
        for sname, sched in self.schedules.items():
            for layer in sched.layers:
                for p in layer.participants:
                    need(f"person in schedule {sname}", p, people)
            for o in sched.overrides:
                need(f"person in schedule {sname} override", o.person, people)
        for pname, pol in self.escalation_policies.items():
            for step in pol.steps:
                for p in step.people:
                    need(f"person in policy {pname}", p, people)
                for s in step.schedules:
                    need(f"schedule in policy {pname}", s, dict(self.schedules))
            for p in pol.fallback.people if pol.fallback else ():
                need(f"fallback person in policy {pname}", p, people)
        routes = [("default", self.routing.default)]
        routes += [(f"customer {k}", r) for k, r in self.routing.customers.items()]
        routes += [(f"site {k}", r) for k, r in self.routing.sites.items()]
        for where, route in routes:
            if route.escalation_policy is not None:
                need(
                    f"escalation_policy in routing {where}",
                    route.escalation_policy,
                    dict(self.escalation_policies),
                )
            for p in route.digest_to or ():
                need(f"digest_to person in routing {where}", p, people)
        return self
