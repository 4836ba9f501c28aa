"""Table tests of on-call schedules: rotations across DST, restricted layers, overrides, iCal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from paging.config import PagingConfig, Schedule
from paging.schedules import next_change, on_call, parse_ical

NY = ZoneInfo("America/New_York")

PAGING = PagingConfig.model_validate(
    {
        "people": {
            "alice": {"name": "Alice Example", "phone": "+15550101"},
            "bob": {"name": "Bob Example", "phone": "+15550102"},
            "carol": {"name": "Carol Example", "phone": "+15550103"},
            "dave": {"name": "Dave Example", "phone": "+15550104"},
            "erin": {"name": "Erin Example", "phone": "+15550105"},
        },
        "schedules": {
            "primary": {
                "timezone": "America/New_York",
                "layers": [
                    {
                        "name": "weekly",
                        "rotation": "weekly",
                        "start": "2026-01-05",
                        "handoff": "09:00",
                        "participants": ["alice", "bob", "carol"],
                    },
                    {
                        "name": "weeknights",
                        "rotation": "daily",
                        "start": "2026-01-05",
                        "handoff": "18:00",
                        "participants": ["dave", "erin"],
                        "restrict": {d: ["18:00-09:00"] for d in ("mon", "tue", "wed", "thu")},
                    },
                ],
                "overrides": [
                    {
                        "start": "2026-01-07T12:00:00Z",
                        "end": "2026-01-07T20:00:00Z",
                        "person": "carol",
                    },
                ],
            },
            "halfday": {
                "timezone": "UTC",
                "layers": [
                    {
                        "rotation": "custom",
                        "length": "12h",
                        "start": "2026-01-01",
                        "handoff": "06:00",
                        "participants": ["alice", "bob"],
                    }
                ],
            },
        },
    }
)
PRIMARY = PAGING.schedules["primary"]
HALFDAY = PAGING.schedules["halfday"]


def ny(*a: int) -> datetime:
    return datetime(*a, tzinfo=NY)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (ny(2026, 1, 5, 8, 59), None),  # before the first handoff
        (ny(2026, 1, 5, 9, 0), "alice"),  # first shift
        (ny(2026, 1, 5, 20, 0), "dave"),  # weeknight layer wins in its hours
        (ny(2026, 1, 6, 3, 0), "dave"),  # Monday's night range crosses midnight
        (ny(2026, 1, 6, 10, 0), "alice"),  # daytime: weekly layer again
        (ny(2026, 1, 6, 20, 0), "erin"),  # next daily handoff at 18:00
        (ny(2026, 1, 7, 9, 0), "carol"),  # override 12:00Z-20:00Z (07:00-15:00 EST)
        (ny(2026, 1, 7, 15, 0), "alice"),  # override ended
        (ny(2026, 1, 9, 20, 0), "alice"),  # Friday night: no weeknight restriction → weekly
        (ny(2026, 1, 12, 8, 59), "alice"),  # Monday before handoff (weeknights end 09:00 too)
        (ny(2026, 1, 12, 9, 0), "bob"),  # weekly handoff
        (ny(2026, 1, 19, 9, 0), "carol"),
        (ny(2026, 1, 26, 9, 0), "alice"),  # wraps around
        # Spring forward is Sunday 8 March 2026: handoff stays at 09:00 local (EDT).
        (datetime(2026, 3, 9, 12, 59, tzinfo=UTC), "carol"),  # 08:59 EDT, week 8
        (datetime(2026, 3, 9, 13, 0, tzinfo=UTC), "alice"),  # 09:00 EDT, week 9
        # Fall back is Sunday 1 November 2026: 09:00 EST is 14:00 UTC.
        (datetime(2026, 11, 2, 13, 59, tzinfo=UTC), "alice"),  # week 42 → alice
        (datetime(2026, 11, 2, 14, 0, tzinfo=UTC), "bob"),
    ],
)
def test_primary_on_call(t: datetime, expected: str | None) -> None:
    assert on_call(PRIMARY, t) == expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (datetime(2026, 1, 1, 5, 59, tzinfo=UTC), None),
        (datetime(2026, 1, 1, 6, 0, tzinfo=UTC), "alice"),
        (datetime(2026, 1, 1, 18, 0, tzinfo=UTC), "bob"),
        (datetime(2026, 1, 2, 5, 59, tzinfo=UTC), "bob"),
        (datetime(2026, 1, 2, 6, 0, tzinfo=UTC), "alice"),
    ],
)
def test_custom_length_rotation(t: datetime, expected: str | None) -> None:
    assert on_call(HALFDAY, t) == expected


def test_next_change_skips_boundaries_that_change_nothing() -> None:
    # Friday 10:00 alice; weekend nights are unrestricted, so the next change is Monday
    # 18:00 when the weeknight layer (dave/erin) takes over... after bob's 09:00 handoff.
    assert next_change(PRIMARY, ny(2026, 1, 9, 10, 0)) == ny(2026, 1, 12, 9, 0)
    assert next_change(PRIMARY, ny(2026, 1, 12, 10, 0)) == ny(2026, 1, 12, 18, 0)
    assert next_change(PRIMARY, ny(2026, 1, 7, 8, 0)) == ny(2026, 1, 7, 15, 0)


def test_naive_time_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        on_call(PRIMARY, datetime(2026, 1, 5, 10, 0))


ICAL = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//example.com//oncall//EN
BEGIN:VEVENT
UID:weekend-1@example.com
DTSTART;TZID=America/New_York:20260110T000000
DTEND;TZID=America/New_York:20260111T000000
RRULE:FREQ=WEEKLY;BYDAY=SA
SUMMARY:Bob Example
END:VEVENT
BEGIN:VEVENT
UID:one-off@example.com
DTSTART:20260113T150000Z
DTEND:20260113T170000Z
SUMMARY:erin
END:VEVENT
BEGIN:VEVENT
UID:stranger@example.com
DTSTART:20260114T150000Z
DTEND:20260114T170000Z
SUMMARY:Somebody Unknown
END:VEVENT
END:VCALENDAR
"""


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (ny(2026, 1, 10, 12, 0), "bob"),  # recurring Saturday shift, matched by name
        (ny(2026, 3, 14, 23, 30), "bob"),  # still recurring after DST
        (ny(2026, 3, 15, 0, 30), "alice"),  # Sunday: back to the layers (week 9 → alice)
        (datetime(2026, 1, 13, 16, 0, tzinfo=UTC), "erin"),  # one-off, matched by key
        (datetime(2026, 1, 14, 16, 0, tzinfo=UTC), "bob"),  # unknown summary ignored
        (datetime(2026, 1, 7, 13, 0, tzinfo=UTC), "carol"),  # override beats iCal and layers
    ],
)
def test_ical_shifts(t: datetime, expected: str) -> None:
    shifts = parse_ical(ICAL, dict(PAGING.people))
    assert on_call(PRIMARY, t, shifts) == expected


def test_ical_garbage_rejected() -> None:
    with pytest.raises(ValueError, match="iCalendar"):
        parse_ical("this is not a calendar", dict(PAGING.people))


def test_ical_next_change() -> None:
    shifts = parse_ical(ICAL, dict(PAGING.people))
    assert next_change(PRIMARY, ny(2026, 1, 9, 20, 0), shifts) == ny(2026, 1, 10, 0, 0)


def test_schedule_without_layers_is_nobody() -> None:
    empty = Schedule(timezone="UTC")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert on_call(empty, t) is None
    assert next_change(empty, t) is None
    assert next_change(empty, t + timedelta(days=1)) is None
