"""Table tests of support-hours arithmetic: DST, midnight-crossing ranges, holidays, half-days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nocd.calendar_config import DAYS, CalendarConfig
from paging.hours import (
    NoTransition,
    UnknownCalendar,
    add_open_time,
    check_calendar,
    is_open,
    next_close,
    next_open,
    open_seconds_between,
    resolve,
)

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")

OFFICE = CalendarConfig.model_validate(
    {
        "timezone": "America/New_York",
        "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": [{"country": "US"}],
        "closed_dates": ["2026-02-13"],
        "half_days": [{"date": "2026-12-24", "hours": ["09:00-13:00"]}],
    }
)
NIGHTS = CalendarConfig.model_validate(
    {  # a night shift crossing midnight, and a weekend run merged across days
        "timezone": "Europe/Paris",
        "weekly": {
            "fri": ["22:00-06:00"],
            "sat": ["06:00-24:00"],
            "sun": ["00:00-24:00", "01:30-03:30"],
        },
    }
)


def ny(*a: int) -> datetime:
    return datetime(*a, tzinfo=NY)  # type: ignore[misc]


def paris(*a: int) -> datetime:
    return datetime(*a, tzinfo=PARIS)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (ny(2026, 1, 5, 9, 0), True),  # Monday opening minute
        (ny(2026, 1, 5, 8, 59, 59), False),  # one second before opening
        (ny(2026, 1, 5, 18, 0), False),  # end is exclusive
        (ny(2026, 1, 5, 17, 59, 59), True),
        (ny(2026, 1, 3, 11, 0), False),  # Saturday
        (ny(2026, 1, 1, 11, 0), False),  # New Year's Day (US holiday, a Thursday)
        (ny(2026, 7, 3, 11, 0), False),  # Independence Day observed on Friday
        (ny(2026, 11, 26, 11, 0), False),  # Thanksgiving
        (ny(2026, 2, 13, 11, 0), False),  # explicit closed date
        (ny(2026, 12, 24, 12, 59), True),  # half-day morning
        (ny(2026, 12, 24, 13, 0), False),  # half-day afternoon closed
        (ny(2026, 3, 9, 9, 0), True),  # Monday after spring-forward: 09:00 EDT
        (datetime(2026, 3, 9, 13, 0, tzinfo=UTC), True),  # = 09:00 EDT
        (datetime(2026, 3, 9, 13, 59, tzinfo=UTC), True),
        (datetime(2026, 3, 6, 13, 30, tzinfo=UTC), False),  # Friday before: 08:30 EST
        (datetime(2026, 11, 2, 14, 0, tzinfo=UTC), True),  # Monday after fall-back: 09:00 EST
        (datetime(2026, 11, 2, 13, 30, tzinfo=UTC), False),  # 08:30 EST
    ],
)
def test_office_is_open(t: datetime, expected: bool) -> None:
    assert is_open(OFFICE, t) is expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (paris(2026, 1, 9, 21, 59), False),  # Friday before the night shift
        (paris(2026, 1, 9, 22, 0), True),  # Friday night shift starts
        (paris(2026, 1, 10, 3, 0), True),  # after midnight, still Friday's range
        (paris(2026, 1, 10, 6, 0), True),  # Saturday range continues seamlessly
        (paris(2026, 1, 11, 23, 59), True),  # Sunday
        (paris(2026, 1, 12, 0, 0), False),  # Monday midnight: closed
        (paris(2026, 1, 8, 23, 0), False),  # Thursday night
    ],
)
def test_nights_is_open(t: datetime, expected: bool) -> None:
    assert is_open(NIGHTS, t) is expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (ny(2026, 1, 3, 2, 0), ny(2026, 1, 5, 9, 0)),  # Saturday 02:00 → Monday 09:00
        (ny(2026, 1, 5, 10, 0), ny(2026, 1, 5, 10, 0)),  # open now → now
        (ny(2026, 1, 5, 18, 0), ny(2026, 1, 6, 9, 0)),  # closing time → next morning
        (ny(2026, 12, 31, 19, 0), ny(2027, 1, 4, 9, 0)),  # New Year holiday, then weekend
        (ny(2026, 7, 2, 20, 0), ny(2026, 7, 6, 9, 0)),  # observed holiday + weekend
        (ny(2026, 3, 7, 12, 0), ny(2026, 3, 9, 9, 0)),  # across spring-forward
        (ny(2026, 10, 31, 12, 0), ny(2026, 11, 2, 9, 0)),  # across fall-back
        (ny(2026, 11, 25, 19, 0), ny(2026, 11, 27, 9, 0)),  # Thanksgiving skipped
    ],
)
def test_office_next_open(t: datetime, expected: datetime) -> None:
    assert next_open(OFFICE, t) == expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (ny(2026, 1, 5, 10, 0), ny(2026, 1, 5, 18, 0)),
        (ny(2026, 1, 5, 20, 0), ny(2026, 1, 5, 20, 0)),  # closed now → now
        (ny(2026, 12, 24, 10, 0), ny(2026, 12, 24, 13, 0)),  # half-day
    ],
)
def test_office_next_close(t: datetime, expected: datetime) -> None:
    assert next_close(OFFICE, t) == expected


def test_merged_weekend_closes_monday_midnight() -> None:
    # Friday 22:00 → Monday 00:00 is one open stretch across three day boundaries.
    assert next_close(NIGHTS, paris(2026, 1, 9, 23, 0)) == paris(2026, 1, 12, 0, 0)


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        (ny(2026, 1, 5, 10, 0), 3600, ny(2026, 1, 5, 11, 0)),  # inside hours
        (ny(2026, 1, 5, 17, 0), 7200, ny(2026, 1, 6, 10, 0)),  # spills to next morning
        (ny(2026, 1, 3, 2, 0), 900, ny(2026, 1, 5, 9, 15)),  # weekend: clock starts Monday
        (ny(2026, 1, 9, 17, 30), 3600, ny(2026, 1, 12, 9, 30)),  # Friday → Monday
        (ny(2026, 1, 5, 9, 0), 9 * 3600, ny(2026, 1, 5, 18, 0)),  # exactly one full day
        (ny(2026, 1, 5, 9, 0), 9 * 3600 + 1, ny(2026, 1, 6, 9, 0, 1)),
        (ny(2026, 3, 6, 17, 0), 7200, ny(2026, 3, 9, 10, 0)),  # over spring-forward weekend
        (ny(2026, 12, 24, 12, 0), 7200, ny(2026, 12, 28, 10, 0)),  # half-day, Xmas, weekend
        (ny(2026, 1, 5, 10, 0), 0, ny(2026, 1, 5, 10, 0)),
    ],
)
def test_add_open_time(start: datetime, seconds: float, expected: datetime) -> None:
    assert add_open_time(OFFICE, start, seconds) == expected


def test_dst_days_count_real_seconds() -> None:
    # Sunday 29 March 2026 in Paris has 23 hours; 25 October 2026 has 25 hours.
    spring = open_seconds_between(NIGHTS, paris(2026, 3, 29, 0, 0), paris(2026, 3, 30, 0, 0))
    autumn = open_seconds_between(NIGHTS, paris(2026, 10, 25, 0, 0), paris(2026, 10, 26, 0, 0))
    assert spring == 23 * 3600
    assert autumn == 25 * 3600


def test_range_starting_in_spring_gap_is_shifted_forward() -> None:
    cal = CalendarConfig.model_validate(
        {"timezone": "Europe/Paris", "weekly": {"sun": ["02:30-05:00"]}}
    )
    # 02:30 does not exist on 29 March 2026; it is read as 03:30 CEST (01:30 UTC).
    assert next_open(cal, paris(2026, 3, 29, 0, 0)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert open_seconds_between(cal, paris(2026, 3, 29, 0), paris(2026, 3, 30, 0)) == 1.5 * 3600


def test_24x7_none_is_always_open() -> None:
    t = ny(2026, 1, 3, 2, 0)
    assert is_open(None, t)
    assert next_open(None, t) == t
    assert add_open_time(None, t, 90) == t + timedelta(seconds=90)
    with pytest.raises(NoTransition):
        next_close(None, t)


def test_never_open_calendar_raises() -> None:
    cal = CalendarConfig.model_validate({"timezone": "UTC"})
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert not is_open(cal, t)
    assert next_close(cal, t) == t
    with pytest.raises(NoTransition):
        next_open(cal, t)


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(OFFICE, datetime(2026, 1, 5, 10, 0))


def test_resolve_names() -> None:
    cals = {"office": OFFICE}
    assert resolve(cals, "24x7") is None
    assert resolve(cals, None) is None
    assert resolve(cals, "office") is OFFICE
    with pytest.raises(UnknownCalendar):
        resolve(cals, "nope")


def test_holiday_subdivision_and_bad_country() -> None:
    bavaria = CalendarConfig.model_validate(
        {
            "timezone": "Europe/Berlin",
            "weekly": {"thu": ["09:00-18:00"], "fri": ["09:00-18:00"]},
            "holidays": [{"country": "DE", "subdivision": "BY"}],
        }
    )
    berlin = bavaria.model_copy(update={"holidays": ()})
    t = datetime(2026, 6, 4, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # Corpus Christi (BY)
    assert not is_open(bavaria, t)
    assert is_open(berlin, t)
    check_calendar(bavaria)
    bad = CalendarConfig.model_validate({**bavaria.model_dump(), "holidays": [{"country": "XX"}]})
    with pytest.raises(ValueError, match="XX"):
        check_calendar(bad)


def test_calendar_open_every_hour_never_closes() -> None:
    cal = CalendarConfig.model_validate(
        {"timezone": "Europe/Paris", "weekly": {d: ["00:00-24:00"] for d in DAYS}}
    )
    t = paris(2026, 3, 28, 12, 0)
    assert is_open(cal, t)
    with pytest.raises(NoTransition):
        next_close(cal, t)
    holiday = cal.model_copy(update={"closed_dates": (date(2026, 3, 30),)})
    assert next_close(holiday, t) == paris(2026, 3, 30, 0, 0)
