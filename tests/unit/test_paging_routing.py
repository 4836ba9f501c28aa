"""Routing policy table (severity × support hours × route) and paging config validation."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from nocd.calendar_config import CalendarConfig
from nocd.model import Severity
from paging.config import PagingConfig
from paging.routing import check_calendars, decide, route_for

NY = ZoneInfo("America/New_York")
CALS = {
    "office": CalendarConfig.model_validate(
        {
            "timezone": "America/New_York",
            "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": [{"country": "US"}],
        }
    )
}
BASE: dict[str, Any] = {
    "people": {
        "alice": {"name": "Alice Example", "phone": "+15550101"},
        "bob": {"name": "Bob Example", "phone": "+1 555 0102"},
    },
    "escalation_policies": {
        "default": {"steps": [{"people": ["alice"], "wait": "10m"}]},
        "vip": {"steps": [{"people": ["bob"]}]},
    },
    "routing": {
        "default": {
            "support_hours": "office",
            "escalation_policy": "default",
            "digest_to": ["bob"],
        },
        "customers": {"acme": {"page_in_hours": True, "escalation_policy": "vip"}},
        "sites": {
            "main-street": {"support_hours": "24x7"},
            "quiet": {"digest": False},
        },
    },
}
PAGING = PagingConfig.model_validate(BASE)
SAT_2AM = datetime(2026, 1, 10, 2, 0, tzinfo=NY).timestamp()
MON_11AM = datetime(2026, 1, 12, 11, 0, tzinfo=NY).timestamp()
MON_9AM = datetime(2026, 1, 12, 9, 0, tzinfo=NY).timestamp()
NEW_YEAR = datetime(2026, 1, 1, 11, 0, tzinfo=NY).timestamp()


@pytest.mark.parametrize(
    ("severity", "site", "customer", "now", "page", "digest", "policy"),
    [
        (Severity.CRITICAL, None, None, SAT_2AM, True, False, "default"),  # after hours
        (Severity.CRITICAL, None, None, MON_11AM, False, False, None),  # in hours: ticket
        (Severity.CRITICAL, None, None, NEW_YEAR, True, False, "default"),  # holiday
        (Severity.CRITICAL, None, "acme", MON_11AM, True, False, "vip"),  # page_in_hours
        (Severity.CRITICAL, "main-street", None, SAT_2AM, False, False, None),  # 24x7 open
        (Severity.DEGRADED, None, None, SAT_2AM, False, True, None),  # held for digest
        (Severity.DEGRADED, None, None, MON_11AM, False, False, None),  # ticket only
        (Severity.DEGRADED, "quiet", None, SAT_2AM, False, False, None),  # digest off
        (Severity.LOW, None, None, SAT_2AM, False, False, None),
        (Severity.UNKNOWN, None, None, SAT_2AM, False, False, None),
    ],
)
def test_decide_table(
    severity: Severity,
    site: str | None,
    customer: str | None,
    now: float,
    page: bool,
    digest: bool,
    policy: str | None,
) -> None:
    d = decide(severity, site, customer, now, PAGING, CALS)
    assert (d.page_now, d.digest, d.policy, d.ticket) == (page, digest, policy, True)
    assert severity.value in d.reason


def test_degraded_digest_due_when_hours_open() -> None:
    d = decide(Severity.DEGRADED, None, None, SAT_2AM, PAGING, CALS)
    assert d.digest_at == MON_9AM
    assert d.digest_to == ("bob",)
    assert "outside support hours office" in d.reason
    assert "2026-01-12 14:00Z" in d.reason


def test_ok_does_nothing() -> None:
    d = decide(Severity.OK, None, None, SAT_2AM, PAGING, CALS)
    assert not (d.page_now or d.ticket or d.digest)


def test_unknown_calendar_counts_as_closed_and_fails_check() -> None:
    d = decide(Severity.CRITICAL, None, None, MON_11AM, PAGING, {})
    assert d.page_now and "unknown" in d.reason
    with pytest.raises(ValueError, match="unknown support_hours 'office'"):
        check_calendars(PAGING, {})
    check_calendars(PAGING, CALS)


def test_route_precedence() -> None:
    r = route_for(PAGING, "main-street", "acme")
    assert (r.name, r.support_hours, r.escalation_policy, r.page_in_hours) == (
        "site:main-street",
        "24x7",
        "vip",
        True,
    )
    assert route_for(PAGING, "elsewhere", None).name == "default"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"people": {"x": {"name": "X", "phone": "5550101"}}}, "E.164"),
        ({"people": {"x": {"name": "X"}}}, "needs a phone"),
        ({"people": {"Bad Name": {"name": "X", "phone": "+15550101"}}}, "lowercase"),
        ({"escalation_policies": {"p": {"steps": [{"people": ["zed"]}]}}}, "unknown person"),
        ({"escalation_policies": {"p": {"steps": [{"schedules": ["s"]}]}}}, "unknown schedule"),
        ({"escalation_policies": {"p": {"steps": []}}}, "at least 1"),
        ({"escalation_policies": {"p": {"steps": [{"wait": "5m"}]}}}, "people or schedules"),
        ({"routing": {"default": {"escalation_policy": "nope"}}}, "unknown escalation_policy"),
        ({"routing": {"default": {"digest_to": ["zed"]}}}, "unknown digest_to person"),
        ({"provider": {"type": "carrier-pigeon"}}, "does not match any of the expected tags"),
        (
            {
                "provider": {
                    "type": "twilio",
                    "account_sid": "AC123",
                    "auth_token": "${NOPE_X}",
                    "from_number": "+15550100",
                }
            },
            "in clear",
        ),
        ({"bogus": 1}, "Extra inputs are not permitted"),
        (
            {
                "schedules": {
                    "s": {
                        "layers": [
                            {"start": "2026-01-01", "participants": ["alice"], "rotation": "custom"}
                        ]
                    }
                }
            },
            "needs `length`",
        ),
        (
            {
                "schedules": {
                    "s": {
                        "layers": [
                            {"start": "2026-01-01", "participants": ["alice"], "handoff": "25:00"}
                        ]
                    }
                }
            },
            "HH:MM",
        ),
        (
            {
                "schedules": {
                    "s": {
                        "overrides": [
                            {
                                "start": "2026-01-02T00:00:00",
                                "end": "2026-01-03T00:00:00",
                                "person": "alice",
                            }
                        ]
                    }
                }
            },
            "zone offset",
        ),
    ],
)
def test_config_errors(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PagingConfig.model_validate({**BASE, **patch})


def test_twilio_provider_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_TEST_SID", "AC00000000000000000000000000000001")
    monkeypatch.setenv("NOCD_TEST_TOKEN", "s3cret-token")
    cfg = PagingConfig.model_validate(
        {
            **BASE,
            "provider": {
                "type": "twilio",
                "account_sid": "${NOCD_TEST_SID}",
                "auth_token": "${NOCD_TEST_TOKEN}",
                "from_number": "+15550100",
            },
        }
    )
    assert cfg.provider.type == "twilio"
    assert "s3cret" not in repr(cfg)
