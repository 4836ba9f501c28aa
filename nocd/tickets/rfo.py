"""Reason For Outage reports rendered from an incident's timeline, and RFO due tracking.

Root cause and remedy come from engineers' notes (timeline events of kind "note"): a note
whose text starts with "root cause:" or "remedy:" (any case) fills that section; other
notes are listed as notes. RFOs are owed for priorities in `tickets.rfo_due` (P1 24 h,
P2 96 h after the resolve by default); `Tickets.mark_rfo_delivered` records delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite
import jinja2

from nocd.clock import iso
from nocd.config import Config
from nocd.duration import format_duration
from nocd.incidents.model import Incident
from nocd.incidents.timeline import TimelineEvent
from nocd.model import Severity, worst
from nocd.tickets import describe, sla
from nocd.tickets.rfo_templates import HTML, MARKDOWN
from nocd.tickets.sink import fact_label

_NOTE_SECTIONS = (("root cause:", "root_causes"), ("remedy:", "remedies"))
_PAGING = ("page", "delivery", "ack", "escalation", "escalated")


def _md(value: Any) -> str:
    """Make text safe inside a Markdown table cell or list item."""
    text = str(value).replace("\r", "").replace("\n", " ").replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


# Markdown is often rendered to HTML later, so `md` also escapes angle brackets.
_MD_ENV = jinja2.Environment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
_MD_ENV.filters["md"] = _md
_HTML_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_HTML_ENV.filters["md"] = str  # HTML escaping is jinja2's autoescape
for _env in (_MD_ENV, _HTML_ENV):
    _env.filters["label"] = fact_label
_TEMPLATES = {
    "markdown": _MD_ENV.from_string(MARKDOWN),
    "html": _HTML_ENV.from_string(HTML),
}


def context(incident: Incident, events: Sequence[TimelineEvent], config: Config) -> dict[str, Any]:
    """Everything the templates show, computed from the incident, its timeline and inventory."""
    _, site = describe.site_of(config, incident)
    zone = site.timezone if site else None

    def when(ts: float | None) -> str:
        return describe.local(ts, zone) if ts is not None else "—"

    severities = [incident.severity]
    for ev in events:
        for key in ("severity", "to"):
            if ev.kind in ("opened", "severity") and ev.data.get(key):
                try:
                    severities.append(Severity(ev.data[key]))
                except ValueError:
                    pass
    peak = worst(*severities)
    _, plan = sla.plan_of(config, describe.customer_of(config, incident))
    start = min([m.since for m in incident.members] + [incident.opened_at])
    end = incident.resolved_at
    notes: dict[str, list[str]] = {"root_causes": [], "remedies": [], "notes": []}
    for ev in events:
        if ev.kind != "note":
            continue
        text, lower = ev.text.strip(), ev.text.strip().lower()
        for prefix, section in _NOTE_SECTIONS:
            if lower.startswith(prefix):
                notes[section].append(text[len(prefix) :].strip())
                break
        else:
            notes["notes"].append(f"{text} — {ev.data.get('by', 'unknown')}, {when(ev.at)}")
    evidence = [f"{m.check}: {m.reason}" for m in incident.members if m.reason]
    for ev in events:
        reasons = ev.data.get("reasons") if ev.kind == "opened" else None
        if reasons and not evidence:
            evidence.append(str(reasons))
    return {
        "incident": incident,
        "priority": sla.priority(plan, peak),
        "peak": str(peak),
        "facts": describe.facts(config, incident),
        "start": when(start),
        "detected": when(incident.opened_at),
        "acked": when(incident.acked_at),
        "acked_by": incident.acked_by,
        "end": when(end),
        "duration": format_duration(end - start) if end is not None else "ongoing",
        "to_ack": format_duration(incident.acked_at - incident.opened_at)
        if incident.acked_at is not None
        else None,
        "members": [
            {
                "check": m.check,
                "severity": str(m.severity),
                "failure": m.failure,
                "since": when(m.since),
                "recovered": when(m.recovered_at),
            }
            for m in incident.members
        ],
        "classification": [
            (when(ev.at), ev.text) for ev in events if ev.kind in ("opened", "severity", "cause")
        ],
        "paging": [(when(ev.at), ev.text) for ev in events if ev.kind in _PAGING],
        "timeline": [(when(ev.at), ev.kind, ev.text) for ev in events],
        "evidence": evidence,
        **notes,
    }


def render(
    incident: Incident,
    events: Sequence[TimelineEvent],
    config: Config,
    fmt: Literal["markdown", "html"] = "markdown",
) -> str:
    """Render the RFO of `incident` as Markdown or HTML (HTML-escaped by jinja2)."""
    try:
        template = _TEMPLATES[fmt]
    except KeyError:
        raise ValueError(f"unknown RFO format {fmt!r}; use markdown or html") from None
    return template.render(**context(incident, events, config))


@dataclass(frozen=True, slots=True)
class RfoDue:
    """An RFO that is owed: for which incident, by when."""

    incident_id: int
    code: str
    priority: str
    resolved_at: float
    due: float
    overdue_s: float  # negative while still in time

    def as_json(self) -> dict[str, Any]:
        """The API shape."""
        return {
            "incident": self.code,
            "incident_id": self.incident_id,
            "priority": self.priority,
            "resolved_at": iso(self.resolved_at),
            "due": iso(self.due),
            "overdue_seconds": round(self.overdue_s),
        }


async def owed_rfos(conn: aiosqlite.Connection, now: float) -> list[RfoDue]:
    """Every RFO not yet delivered, soonest due first."""
    async with conn.execute(
        "SELECT t.incident_id, i.code, t.worst_priority, t.resolved_at, t.rfo_due "
        "FROM tickets t JOIN incidents i ON i.id = t.incident_id "
        "WHERE t.rfo_due IS NOT NULL AND t.rfo_delivered_at IS NULL ORDER BY t.rfo_due"
    ) as cur:
        rows = await cur.fetchall()
    return [RfoDue(r[0], r[1], r[2], r[3], r[4], now - r[4]) for r in rows]


async def overdue_rfos(conn: aiosqlite.Connection, now: float) -> list[RfoDue]:
    """RFOs past their due time and not delivered (for metrics and the API)."""
    return [r for r in await owed_rfos(conn, now) if r.overdue_s > 0]
