"""Config model of a support-hours calendar (weekly ranges in a zone, holidays, half-days)."""

from __future__ import annotations

import re
from datetime import date, time

from pydantic import Field, field_validator, model_validator

from nocd.inventory import Strict, check_zone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def parse_range(text: str) -> tuple[time, time | None]:
    """Parse `HH:MM-HH:MM`; an end of 24:00 is returned as None (end of day).

    An end before the start means the range crosses midnight.
    """
    m = _RANGE.match(text.replace(" ", ""))
    if not m:
        raise ValueError(f"invalid time range {text!r}: write HH:MM-HH:MM, e.g. 09:00-18:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 == 24 and m1 == 0:
        raise ValueError(f"invalid time range {text!r}: a range cannot start at 24:00")
    if (h1 == 24 and m1) or (h2 == 24 and m2):
        raise ValueError(f"invalid time range {text!r}")
    start = time(h1, m1)
    end = None if h2 == 24 else time(h2, m2)
    if end == start:
        raise ValueError(f"empty time range {text!r}")
    return start, end


class HalfDay(Strict):
    """A date with shortened hours (e.g. 24 Dec 09:00-13:00)."""

    date: date
    hours: tuple[str, ...]

    @field_validator("hours")
    @classmethod
    def _ranges(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for r in v:
            parse_range(r)
        return v


class HolidaySource(Strict):
    """Public holidays from the `holidays` package, by country and subdivision."""

    country: str
    subdivision: str | None = None


class CalendarConfig(Strict):
    """Weekly open ranges per weekday in an IANA zone, closed on holidays."""

    timezone: str
    weekly: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    holidays: tuple[HolidaySource, ...] = ()
    closed_dates: tuple[date, ...] = ()
    half_days: tuple[HalfDay, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

    @model_validator(mode="after")
    def _weekly(self) -> CalendarConfig:
        for day, ranges in self.weekly.items():
            if day not in DAYS:
                raise ValueError(f"unknown weekday {day!r}; use one of {', '.join(DAYS)}")
            for r in ranges:
                parse_range(r)
        return self
