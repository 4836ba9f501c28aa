"""On-call schedules (pure): rotations in layers, overrides, iCal shifts → who is on call at t.

Contract:
    on_call(schedule, t, ical=None) -> str | None          person key on call at aware `t`
    next_change(schedule, t, ical=None) -> datetime | None  when that answer next changes
    parse_ical(text, people) -> IcalShifts                   shifts from an iCal feed or file
    load_ical(path, people) -> IcalShifts

Precedence at an instant: the last matching override, then an iCal shift, then the last
layer (in config order) whose rotation has started and whose `restrict` hours contain t.
Daily/weekly (and whole-day custom) rotations hand off at the local wall-clock `handoff`
time in the schedule's zone, so DST does not shift handoffs; sub-day custom lengths count
real elapsed seconds from the first handoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from nocd.calendar_config import CalendarConfig
from paging.config import Layer, Person, Schedule
from paging.hours import NoTransition, is_open, next_close, next_open

_DAY = 86400.0
_WEEK = 7 * _DAY
_ICAL_LOOKAHEAD = timedelta(days=62)


@dataclass(frozen=True, slots=True)
class Shift:
    """One person on call from `start` to `end` (UTC)."""

    person: str
    start: datetime
    end: datetime


class IcalShifts:
    """Parsed iCal shifts; recurring events are expanded on demand around the asked time."""

    def __init__(self, calendar: Any, people: dict[str, Person]) -> None:
        self._cal = calendar
        self._match = {k.lower(): k for k in people}
        self._match.update({p.name.lower(): k for k, p in people.items()})

    def between(self, start: datetime, end: datetime) -> list[Shift]:
        """Shifts overlapping [start, end) whose SUMMARY names a known person."""
        out = []
        for ev in recurring_ical_events.of(self._cal).between(start, end):
            person = self._match.get(str(ev.get("SUMMARY", "")).strip().lower())
            if person is None:
                continue
            s, e = _aware(ev.get("DTSTART").dt), _aware(ev.get("DTEND").dt)
            out.append(Shift(person, s, e))
        out.sort(key=lambda x: x.start)
        return out

    def at(self, t: datetime) -> str | None:
        """The person of the latest-starting shift that contains t."""
        hits = [s for s in self.between(t, t + timedelta(seconds=1)) if s.start <= t < s.end]
        return hits[-1].person if hits else None


def _aware(v: datetime | date) -> datetime:
    if not isinstance(v, datetime):  # an all-day event: midnight UTC
        return datetime.combine(v, time(0), UTC)
    return v if v.tzinfo is not None else v.replace(tzinfo=UTC)


def parse_ical(text: str | bytes, people: dict[str, Person]) -> IcalShifts:
    """Parse an iCal document (feed body or file); raises ValueError when it is not iCal."""
    try:
        cal = icalendar.Calendar.from_ical(text)
    except Exception as exc:  # noqa: BLE001 - icalendar raises varied types on garbage
        raise ValueError(f"not an iCalendar document: {exc}") from None
    return IcalShifts(cal, people)


def load_ical(path: Path, people: dict[str, Person]) -> IcalShifts:
    """Read and parse an iCal file of shifts."""
    return parse_ical(path.read_bytes(), people)


def _wall(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(h, m)).replace(tzinfo=zone).astimezone(UTC)


def _length(layer: Layer) -> float:
    if layer.rotation == "daily":
        return _DAY
    if layer.rotation == "weekly":
        return _WEEK
    assert layer.length is not None  # validated by the config
    return layer.length


def layer_shift(layer: Layer, zone: ZoneInfo, t: datetime) -> Shift | None:
    """The rotation shift of `layer` containing t (ignoring `restrict`); None before start."""
    length = _length(layer)
    n = len(layer.participants)
    if length % _DAY == 0:
        days = int(length // _DAY)
        local = t.astimezone(zone)
        h, m = (int(x) for x in layer.handoff.split(":"))
        elapsed = (local.date() - layer.start).days
        if local.time().replace(tzinfo=None) < time(h, m):
            elapsed -= 1
        if elapsed < 0:
            return None
        idx = elapsed // days
        first = layer.start + timedelta(days=idx * days)
        start = _wall(first, layer.handoff, zone)
        end = _wall(first + timedelta(days=days), layer.handoff, zone)
    else:
        anchor = _wall(layer.start, layer.handoff, zone)
        secs = (t - anchor).total_seconds()
        if secs < 0:
            return None
        idx = int(secs // length)
        start = anchor + timedelta(seconds=idx * length)
        end = start + timedelta(seconds=length)
    return Shift(layer.participants[idx % n], start, end)


def _restrict(layer: Layer, zone: str) -> CalendarConfig | None:
    if not layer.restrict:
        return None
    return CalendarConfig(timezone=zone, weekly=layer.restrict)


def _layer_at(layer: Layer, sched: Schedule, t: datetime) -> str | None:
    cal = _restrict(layer, sched.timezone)
    if cal is not None and not is_open(cal, t):
        return None
    shift = layer_shift(layer, ZoneInfo(sched.timezone), t)
    return shift.person if shift else None


def on_call(schedule: Schedule, t: datetime, ical: IcalShifts | None = None) -> str | None:
    """The person key on call at aware instant `t`, or None when nobody is."""
    if t.tzinfo is None:
        raise ValueError("on_call needs an aware datetime")
    for o in reversed(schedule.overrides):
        if o.start <= t < o.end:
            return o.person
    if ical is not None:
        person = ical.at(t)
        if person is not None:
            return person
    for layer in reversed(schedule.layers):
        person = _layer_at(layer, schedule, t)
        if person is not None:
            return person
    return None


def _boundaries(schedule: Schedule, t: datetime, ical: IcalShifts | None) -> list[datetime]:
    """Instants after t where the answer of on_call may change."""
    out: list[datetime] = []
    zone = ZoneInfo(schedule.timezone)
    for o in schedule.overrides:
        out += [b for b in (o.start, o.end) if b > t]
    for layer in schedule.layers:
        shift = layer_shift(layer, zone, t)
        if shift is not None:
            out.append(shift.end)
        else:
            out.append(_wall(layer.start, layer.handoff, zone))
        cal = _restrict(layer, schedule.timezone)
        if cal is not None:
            try:
                out.append(next_close(cal, t) if is_open(cal, t) else next_open(cal, t))
            except NoTransition:
                pass
    if ical is not None:
        for s in ical.between(t, t + _ICAL_LOOKAHEAD):
            out += [b for b in (s.start, s.end) if b > t]
    return [b for b in out if b > t]


def next_change(
    schedule: Schedule, t: datetime, ical: IcalShifts | None = None, limit: int = 200
) -> datetime | None:
    """When the person on call next changes after t (None: not within the bounded search)."""
    who = on_call(schedule, t, ical)
    cur = t
    for _ in range(limit):
        bounds = _boundaries(schedule, cur, ical)
        if not bounds:
            return None
        cur = min(bounds)
        if on_call(schedule, cur, ical) != who:
            return cur
    return None
