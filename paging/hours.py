"""Support-hours calendars: pure, DST-correct open/closed arithmetic over `CalendarConfig`.

One implementation for paging (is the support queue open?) and tickets (SLA clocks).

Contract (all datetimes aware; results are returned in UTC):
- `is_open(cal, t) -> bool`
- `next_open(cal, t) -> datetime`   (t itself when open now)
- `next_close(cal, t) -> datetime`  (t itself when closed now)
- `add_open_time(cal, start, seconds) -> datetime`  (when `seconds` of open time have elapsed)
- `resolve(calendars, name) -> CalendarConfig | None`  ("24x7" → None)

`cal=None` means 24x7: always open. `next_close`/`next_open` raise `NoTransition` when the
calendar never closes/opens within `HORIZON_DAYS` (e.g. 24x7, or a calendar with no hours).

Semantics:
- a weekly range belongs to the local day it starts on; `22:00-06:00` on `fri` runs from
  Friday 22:00 to Saturday 06:00, and `24:00` as an end means midnight;
- a day's ranges come from, in priority order: `closed_dates` (closed), `half_days` (their
  hours replace the weekly ones), public holidays of any configured country/subdivision
  (closed), then `weekly`;
- local times are converted with the calendar's IANA zone: a range start inside the
  spring-forward gap is shifted forward by the gap (02:30 → 03:30, as RFC 5545 says);
  ambiguous autumn times take the first occurrence; open time is counted in real elapsed
  seconds (a 09:00-18:00 day is 9 h even on a DST change day; 00:00-24:00 is 23 h or 25 h).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_pkg

from nocd.calendar_config import DAYS, CalendarConfig, parse_range

TWENTY_FOUR_SEVEN = "24x7"
HORIZON_DAYS = 800  # more than two years: enough for any holiday run, bounded for safety

Interval = tuple[datetime, datetime]


class NoTransition(ValueError):
    """The calendar never opens (or never closes) within the search horizon."""


class UnknownCalendar(KeyError):
    """A support-hours calendar name not present in the config."""


def resolve(calendars: Mapping[str, CalendarConfig], name: str | None) -> CalendarConfig | None:
    """The calendar named `name`; None (24x7) for "24x7" or no name."""
    if name is None or name == TWENTY_FOUR_SEVEN:
        return None
    try:
        return calendars[name]
    except KeyError:
        raise UnknownCalendar(name) from None


@lru_cache(maxsize=256)
def _holiday_set(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays_pkg.country_holidays(country, subdiv=subdivision, years=year))


def check_calendar(cal: CalendarConfig) -> None:
    """Raise ValueError when a holiday country/subdivision is unknown to `holidays`."""
    for src in cal.holidays:
        try:
            _holiday_set(src.country, src.subdivision, 2026)
        except NotImplementedError:
            raise ValueError(f"unknown holiday country {src.country!r}") from None
        except Exception as exc:  # noqa: BLE001 - holidays raises varied types
            raise ValueError(f"invalid holidays {src.country}/{src.subdivision}: {exc}") from None


def is_holiday(cal: CalendarConfig, day: date) -> bool:
    """True when `day` is a public holiday of one of the calendar's holiday sources."""
    return any(day in _holiday_set(s.country, s.subdivision, day.year) for s in cal.holidays)


def day_ranges(cal: CalendarConfig, day: date) -> tuple[str, ...]:
    """The `HH:MM-HH:MM` ranges that start on local date `day`."""
    if day in cal.closed_dates:
        return ()
    for half in cal.half_days:
        if half.date == day:
            return half.hours
    if is_holiday(cal, day):
        return ()
    return cal.weekly.get(DAYS[day.weekday()], ())


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone` as a UTC instant.

    fold=0 reads a time inside the spring-forward gap with the offset before the gap, i.e.
    shifts it forward by the gap (02:30 → 03:30), as RFC 5545 and java.time do; an
    ambiguous autumn time takes its first occurrence.
    """
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(UTC)


_parse = lru_cache(maxsize=1024)(parse_range)  # the same few range strings, parsed once


def _day_intervals(cal: CalendarConfig, day: date, zone: ZoneInfo) -> list[Interval]:
    out = []
    for text in day_ranges(cal, day):
        start, end = _parse(text)
        s = _local(day, start, zone)
        if end is None or end <= start:
            e = _local(day + timedelta(days=1), end or time(0), zone)
        else:
            e = _local(day, end, zone)
        if e > s:
            out.append((s, e))
    out.sort()
    return out


def intervals(cal: CalendarConfig, t: datetime) -> Iterator[Interval]:
    """Merged open intervals (UTC) that end after `t`, in order, up to the horizon."""
    _aware(t)
    zone = ZoneInfo(cal.timezone)
    # A range that began yesterday may still be open (crossing midnight).
    first = t.astimezone(zone).date() - timedelta(days=1)
    pending: Interval | None = None
    for n in range(HORIZON_DAYS):
        for s, e in _day_intervals(cal, first + timedelta(days=n), zone):
            if pending is None:
                pending = (s, e)
            elif s <= pending[1]:
                pending = (pending[0], max(pending[1], e))
            else:
                if pending[1] > t:
                    yield pending
                pending = (s, e)
    if pending is not None and pending[1] > t:
        yield pending


def _aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("support-hours arithmetic needs an aware datetime")


def is_open(cal: CalendarConfig | None, t: datetime) -> bool:
    """True when the calendar is open at instant `t` (None = 24x7 = always)."""
    _aware(t)
    if cal is None:
        return True
    for s, _e in intervals(cal, t):
        return s <= t
    return False


def next_open(cal: CalendarConfig | None, t: datetime) -> datetime:
    """The first open instant at or after `t` (`t` itself when open now)."""
    _aware(t)
    if cal is None:
        return t.astimezone(UTC)
    for s, _e in intervals(cal, t):
        return max(s, t.astimezone(UTC))
    raise NoTransition(f"calendar never opens within {HORIZON_DAYS} days of {t.isoformat()}")


def next_close(cal: CalendarConfig | None, t: datetime) -> datetime:
    """The first closed instant at or after `t` (`t` itself when closed now)."""
    _aware(t)
    if cal is not None:
        for s, e in intervals(cal, t):
            if s > t:
                return t.astimezone(UTC)
            if e - t.astimezone(UTC) >= timedelta(days=HORIZON_DAYS - 2):
                break  # open through the whole horizon (e.g. every day 00:00-24:00)
            return e
        else:
            return t.astimezone(UTC)
    raise NoTransition("this calendar never closes (24x7)")


def add_open_time(cal: CalendarConfig | None, start: datetime, seconds: float) -> datetime:
    """The instant at which `seconds` of open time have elapsed since `start` (SLA clocks)."""
    _aware(start)
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    t = start.astimezone(UTC)
    if cal is None:
        return t + timedelta(seconds=seconds)
    left = timedelta(seconds=seconds)
    for s, e in intervals(cal, t):
        s = max(s, t)
        if s + left <= e:
            return s + left
        left -= e - s
    raise NoTransition(f"not enough open time within {HORIZON_DAYS} days of {t.isoformat()}")


def open_seconds_between(cal: CalendarConfig | None, start: datetime, end: datetime) -> float:
    """Seconds of open time in [start, end) (e.g. how much of an SLA budget was used)."""
    _aware(start)
    _aware(end)
    if end <= start:
        return 0.0
    if cal is None:
        return (end - start).total_seconds()
    total = 0.0
    for s, e in intervals(cal, start):
        if s >= end:
            break
        total += (min(e, end) - max(s, start)).total_seconds()
    return total
