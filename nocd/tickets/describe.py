"""What a ticket says: title, description (what failed since when, evidence) and PBX facts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from nocd.clock import iso, utc
from nocd.config import Config
from nocd.incidents.model import Incident
from nocd.inventory import Device, Site


def site_of(config: Config, incident: Incident) -> tuple[str | None, Site | None]:
    """The incident's site (its own, else its first member check's)."""
    names = [incident.site] + [_check_attr(config, m.check, "site") for m in incident.members]
    for name in names:
        if name and name in config.sites:
            return name, config.sites[name]
    return incident.site, None


def customer_of(config: Config, incident: Incident) -> str | None:
    """The incident's customer, else its site's."""
    _, site = site_of(config, incident)
    return incident.customer or (site.customer if site else None)


def devices_of(config: Config, incident: Incident) -> dict[str, Device]:
    """The devices the failing checks name; else the site's PBXs."""
    _, site = site_of(config, incident)
    if site is None:
        return {}
    named = {_check_attr(config, m.check, "device") for m in incident.members}
    found = {n: site.devices[n] for n in sorted(x for x in named if x) if n in site.devices}
    return found or {n: d for n, d in site.devices.items() if d.kind == "pbx"}


def _check_attr(config: Config, check: str, attr: str) -> str | None:
    try:
        value = getattr(config.check(check), attr)
    except KeyError:  # the check left the config since the incident opened
        return None
    return str(value) if value is not None else None


def facts(config: Config, incident: Incident) -> dict[str, str]:
    """Inventory facts for the ticket: site, customer, partner, plan, PBX serial/model/…."""
    out: dict[str, str] = {}
    site_name, site = site_of(config, incident)
    if site_name:
        out["site"] = site_name + (f" ({site.name})" if site and site.name else "")
    customer = customer_of(config, incident)
    cust = config.customers.get(customer or "")
    if customer:
        out["customer"] = customer + (f" ({cust.name})" if cust and cust.name else "")
    if cust and cust.partner:
        out["partner"] = cust.partner
    if cust and cust.support_plan:
        out["support_plan"] = cust.support_plan
    if site:
        for key in ("country", "address", "timezone"):
            value = getattr(site, key)
            if value:
                out[key] = str(value)
        if site.contacts:
            out["contacts"] = "; ".join(
                ", ".join(x for x in (c.name, c.role, c.phone, c.email) if x) for c in site.contacts
            )
    devices = devices_of(config, incident)
    if devices:
        out["pbx"] = ", ".join(devices)
        for key in ("serial", "model", "firmware"):
            values = [str(getattr(d, key)) for d in devices.values() if getattr(d, key)]
            if values:
                out[key] = ", ".join(values)
        countries = [d.country for d in devices.values() if d.country]
        if countries:
            out["pbx_country"] = ", ".join(countries)
    return out


def local(ts: float, zone: str | None) -> str:
    """`2026-01-01T09:00:00Z (10:00 CET)`: UTC plus the site's wall clock."""
    text = iso(ts)
    if not zone or zone == "UTC":
        return text
    when: datetime = utc(ts).astimezone(ZoneInfo(zone))
    return f"{text} ({when.strftime('%Y-%m-%d %H:%M %Z')})"


def description(config: Config, incident: Incident) -> str:
    """What failed since when, with each member's evidence (codes, RTTs, missing phones)."""
    _, site = site_of(config, incident)
    zone = site.timezone if site else None
    sev = incident.severity
    lines = [
        f"{incident.title}",
        f"Severity {sev} since {local(incident.opened_at, zone)} (incident {incident.code}).",
    ]
    if incident.cause:
        lines.append(f"Probable cause: {incident.cause} (other failures depend on it).")
    if incident.members:
        lines += ["", "What failed:"]
    for m in incident.members:
        state = (
            f"recovered {local(m.recovered_at, zone)}"
            if m.recovered_at is not None
            else "still failing"
        )
        since = local(m.since, zone)
        lines.append(f"- {m.check}: {m.severity} ({m.failure}) since {since}, {state}")
        if m.reason:
            lines.append(f"  evidence: {m.reason}")
    if incident.resolved_at is not None:
        lines += [
            "",
            f"Resolved {local(incident.resolved_at, zone)}"
            + (f" by {incident.resolved_by}" if incident.resolved_by else "")
            + ".",
        ]
    return "\n".join(lines)
