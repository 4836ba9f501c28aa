"""Durations: `30s`, `5m`, `1h30m`, `250ms` parse to seconds and render back compactly."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from nocd.duration import Duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1.5s", 1.5),
        ("1h 30m", 5400.0),  # spaces between parts are tolerated
        (" 10s ", 10.0),
        ("1m1ms", 60.001),  # "ms" must win over "m" followed by garbage
        (0, 0.0),
        (45, 45.0),  # a bare number means seconds
        (2.5, 2.5),
    ],
)
def test_parse(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "invalid duration '': write it like 30s, 5m, 1h30m or 250ms"),
        ("30", "invalid duration '30': write it like 30s, 5m, 1h30m or 250ms"),
        ("30 seconds", "invalid duration '30 seconds': write it like 30s, 5m, 1h30m or 250ms"),
        ("5x", "invalid duration '5x': write it like 30s, 5m, 1h30m or 250ms"),
        ("s5", "invalid duration 's5': write it like 30s, 5m, 1h30m or 250ms"),
        ("-5s", "invalid duration '-5s': write it like 30s, 5m, 1h30m or 250ms"),
        (-1, "a duration cannot be negative"),
        (True, "a duration must be like 30s, 5m or 1h"),
        (None, "a duration must be like 30s, 5m or 1h"),
        ([5], "a duration must be like 30s, 5m or 1h"),
    ],
)
def test_parse_rejects(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (30, "30s"),
        (90, "1m30s"),
        (3600, "1h"),
        (90061, "1d1h1m1s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 61, 3600, 86399, 90061])
def test_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


class _Model(BaseModel):
    every: Duration


def test_pydantic_field_validates_and_serializes() -> None:
    m = _Model.model_validate({"every": "1h30m"})
    assert m.every == 5400.0
    assert m.model_dump() == {"every": "1h30m"}
    with pytest.raises(ValidationError) as info:
        _Model.model_validate({"every": "soon"})
    assert "invalid duration 'soon'" in str(info.value)
