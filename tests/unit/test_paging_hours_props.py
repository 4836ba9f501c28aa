"""Property tests: support-hours functions agree with each other at arbitrary instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from nocd.calendar_config import CalendarConfig
from paging.hours import add_open_time, is_open, next_close, next_open, open_seconds_between

CALS = [
    CalendarConfig.model_validate(
        {
            "timezone": "America/New_York",
            "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": [{"country": "US"}],
            "half_days": [{"date": "2026-12-24", "hours": ["09:00-13:00"]}],
        }
    ),
    CalendarConfig.model_validate(
        {
            "timezone": "Europe/Paris",
            "weekly": {
                "fri": ["22:00-06:00"],
                "sat": ["01:30-03:30", "12:00-24:00"],
                "sun": ["00:00-02:30"],
            },
        }
    ),
    CalendarConfig.model_validate(
        {
            "timezone": "Australia/Lord_Howe",
            "weekly": {d: ["01:45-02:15", "08:00-20:00"] for d in ("mon", "wed", "sun")},
        }
    ),
]
instants = st.datetimes(
    min_value=datetime(2025, 12, 1), max_value=datetime(2027, 2, 1), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(cal=st.sampled_from(CALS), t=instants)
def test_open_close_agree(cal: CalendarConfig, t: datetime) -> None:
    opens, closes = next_open(cal, t), next_close(cal, t)
    assert opens >= t and closes >= t
    if is_open(cal, t):
        assert opens == t and closes > t
        assert is_open(cal, closes - timedelta(seconds=1)) and not is_open(cal, closes)
    else:
        assert closes == t and opens > t
        assert is_open(cal, opens) and not is_open(cal, opens - timedelta(seconds=1))


@settings(max_examples=150, deadline=None)
@given(cal=st.sampled_from(CALS), t=instants, seconds=st.integers(0, 30 * 3600))
def test_add_open_time_inverts_open_seconds(cal: CalendarConfig, t: datetime, seconds: int) -> None:
    due = add_open_time(cal, t, seconds)
    assert due >= t
    assert abs(open_seconds_between(cal, t, due) - seconds) < 1e-6
    if seconds:
        assert is_open(cal, due - timedelta(seconds=1e-3))
