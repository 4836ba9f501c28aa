"""Inventory config: customers (partner, support plan), sites, devices (serial, model …)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nocd.duration import Duration


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


class ResponseTargets(Strict):
    """Time to respond per severity class."""

    critical: Duration = 900.0
    degraded: Duration = 4 * 3600.0
    low: Duration = 8 * 3600.0


class SupportPlan(Strict):
    """A plan's response (and resolve) targets, counted 24/7 or in a support-hours calendar."""

    response: ResponseTargets = ResponseTargets()
    resolve: ResponseTargets | None = None
    hours: str = Field("24x7", description="'24x7' or the name of a support_hours calendar")
