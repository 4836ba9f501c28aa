"""Inventory config: customers (partner, support plan), sites, devices (serial, model …)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from nocd.duration import format_duration, parse_duration


class Strict(BaseModel):
    """Base for config models: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_zone(v: str) -> str:
    """Validate an IANA time-zone name."""
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Paris)") from None
    return v


class Contact(Strict):
    """A person to reach about a site (not the on-call NOC)."""

    name: str
    phone: str | None = None
    email: str | None = None
    role: str | None = None


class Device(Strict):
    """A PBX or other device at a site; its facts go on tickets and pages."""

    kind: str = "pbx"
    serial: str | None = None
    model: str | None = None
    firmware: str | None = None
    country: str | None = None
    address: str | None = None


class Customer(Strict):
    """A customer, the partner (reseller) who serves it, and its support plan."""

    name: str | None = None
    partner: str | None = None
    support_plan: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Site(Strict):
    """A customer location: zone, country, contacts and devices."""

    name: str | None = None
    customer: str | None = None
    timezone: str = "UTC"
    country: str | None = None
    address: str | None = None
    contacts: tuple[Contact, ...] = ()
    devices: dict[str, Device] = Field(default_factory=dict)
    active_hours: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)


NEXT_BUSINESS_DAY = "next_business_day"


def _target(v: Any) -> Any:
    if v == NEXT_BUSINESS_DAY:
        return v
    try:
        return parse_duration(v)
    except ValueError:
        raise ValueError(
            f"invalid target {v!r}: a duration like 15m or 4h, or {NEXT_BUSINESS_DAY}"
        ) from None


Target = Annotated[
    float | Literal["next_business_day"],
    BeforeValidator(_target),
    PlainSerializer(lambda v: v if isinstance(v, str) else format_duration(v), return_type=str),
]
"""A response target: a duration (`15m`) or `next_business_day` (end of the next open day)."""

Priority = Literal["P1", "P2", "P3", "P4"]


class ResponseTargets(Strict):
    """Time to respond per severity class."""

    critical: Target = 900.0
    degraded: Target = 4 * 3600.0
    low: Target = 8 * 3600.0


class PriorityMap(Strict):
    """Ticket priority per severity class (a plan may rank a class lower, e.g. bronze)."""

    critical: Priority = "P1"
    degraded: Priority = "P2"
    low: Priority = "P3"


class SupportPlan(Strict):
    """A plan's response (and resolve) targets, counted 24/7 or in a support-hours calendar."""

    response: ResponseTargets = ResponseTargets()
    resolve: ResponseTargets | None = None
    priority: PriorityMap = PriorityMap()
    hours: str = Field("24x7", description="'24x7' or the name of a support_hours calendar")
