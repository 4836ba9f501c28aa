"""Unit tests of the `snmp` check: config validation, judgement, restart memory."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from checks import snmp
from checks.snmp_common import error_class, split_target
from nocd.model import FailureClass, Observation, Severity


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_COMMUNITY", "c0mmunity-secret")
    monkeypatch.setenv("T_KEY", "passphrase-1234")


def cfg(**extra: Any) -> snmp.Config:
    raw: dict[str, Any] = {
        "name": "ups1",
        "type": "snmp",
        "target": "ups1.example.com",
        "community": "${T_COMMUNITY}",
        "oids": [
            {
                "oid": "1.3.6.1.4.1.1.1.0",
                "name": "temp",
                "degraded_above": 40,
                "critical_above": 60,
            },
            {
                "oid": ".1.3.6.1.2.1.2.2.1.8.1",
                "name": "if1",
                "equals": 1,
                "on_mismatch": "degraded",
            },
        ],
    }
    raw.update(extra)
    return snmp.Config.model_validate(raw)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"community": None}, "SNMP v2c needs a community"),
        ({"community": "public"}, "secrets may not be written in clear"),
        ({"version": "3", "community": None}, "SNMP v3 needs a v3: section"),
        ({"oids": [{"oid": "sysUpTime.0"}]}, "is not a numeric OID"),
        ({"oids": [{"oid": "1.3.6.1"}, {"oid": "1.3.6.1"}]}, "distinct name"),
        ({"target": "ups1.example.com:99999"}, "target must be host or host:port"),
        ({"version": "3", "v3": {"user": "u", "auth_key": "${T_KEY}"}}, "priv_key is required"),
        ({"version": "3", "v3": {"user": "u", "auth_protocol": "none"}}, "privacy needs auth"),
        (
            {
                "version": "3",
                "v3": {
                    "user": "u",
                    "auth_key": "${T_COMMUNITY}",
                    "priv_key": "${T_KEY}",
                    "auth_protocol": "sha1",
                },
            },
            "auth_protocol",
        ),
    ],
)
def test_invalid_configs(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        cfg(**extra)
    assert message in str(err.value)
    assert "c0mmunity-secret" not in str(err.value)


def test_leading_dot_is_dropped_and_secret_hidden() -> None:
    c = cfg()
    assert c.oids[1].oid == "1.3.6.1.2.1.2.2.1.8.1"
    assert "c0mmunity-secret" not in repr(c)


def test_split_target() -> None:
    assert split_target("ups1.example.com", 161) == ("ups1.example.com", 161)
    assert split_target("192.0.2.1:1161", 161) == ("192.0.2.1", 1161)
    assert split_target("[2001:db8::1]:162", 161) == ("2001:db8::1", 162)
    assert split_target("2001:db8::1", 161) == ("2001:db8::1", 161)


def ok(**values: Any) -> Observation:
    return Observation.success("2 values", 0.01, **values)


@pytest.mark.parametrize(
    ("numbers", "severity", "failure", "reason"),
    [
        ({"temp": 30, "if1": 1}, Severity.OK, FailureClass.NONE, "2 values"),  # all fine
        ({"temp": 45, "if1": 1}, Severity.DEGRADED, FailureClass.THRESHOLD, "temp is 45, above 40"),
        ({"temp": 61, "if1": 1}, Severity.CRITICAL, FailureClass.THRESHOLD, "temp is 61, above 60"),
        ({"temp": 30, "if1": 2}, Severity.DEGRADED, FailureClass.CONTENT, "if1 is 2, expected 1"),
        # worst wins; both reasons are kept
        ({"temp": 61, "if1": 2}, Severity.CRITICAL, FailureClass.THRESHOLD, "if1 is 2"),
    ],
)
def test_evaluate_conditions(
    numbers: dict[str, int], severity: Severity, failure: FailureClass, reason: str
) -> None:
    v = snmp.evaluate(ok(oids=numbers, text={}), cfg())
    assert (v.severity, v.failure) == (severity, failure)
    assert reason in v.reason


def test_below_and_not_equals_and_text() -> None:
    c = cfg(
        oids=[
            {
                "oid": "1.3.6.1.4.1.1.2.0",
                "name": "regs",
                "critical_below": 10,
                "degraded_below": 50,
            },
            {"oid": "1.3.6.1.4.1.1.3.0", "name": "state", "not_equals": "failed"},
            {"oid": "1.3.6.1.4.1.1.4.0", "name": "load", "degraded_above": 1},
        ]
    )
    v = snmp.evaluate(ok(oids={"regs": 20}, text={"state": "ok", "load": "n/a"}), c)
    assert v.severity is Severity.DEGRADED
    assert "regs is 20, below 50" in v.reason
    assert "load is not a number" in v.reason
    v = snmp.evaluate(ok(oids={"regs": 5}, text={"state": "failed"}), c)
    assert v.severity is Severity.CRITICAL
    assert "state is failed" in v.reason


def test_restart_verdict_and_override() -> None:
    obs = ok(
        oids={"temp": 20, "if1": 1},
        text={},
        sys_uptime=12.0,
        restarted=True,
        previous_uptime=86400.0,
    )
    v = snmp.evaluate(obs, cfg())
    assert v.failure is FailureClass.RESTARTED
    assert v.severity is Severity.DEGRADED
    assert v.reason == "device restarted: uptime 12s, was 1d"
    assert snmp.evaluate(obs, cfg(on_restart="critical")).severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("failure", "severity"),
    [
        (FailureClass.TIMEOUT, Severity.CRITICAL),
        (FailureClass.AUTH, Severity.DEGRADED),
        (FailureClass.CONFIG, Severity.DEGRADED),
        (FailureClass.DNS, Severity.CRITICAL),
    ],
)
def test_failures(failure: FailureClass, severity: Severity) -> None:
    v = snmp.evaluate(Observation.failed(failure, "x"), cfg())
    assert v.severity is severity and v.failure is failure
    assert snmp.evaluate(Observation.failed(failure, "x"), cfg(on_failure="low")).severity is (
        Severity.LOW
    )


def test_uptime_book_detects_restart_until_hold() -> None:
    book = snmp.UptimeBook()
    assert book.record("a", 500_000, 100.0, hold=900) is None
    assert book.record("a", 501_000, 110.0, hold=900) is None
    assert book.record("a", 300, 120.0, hold=900) == 501_000  # went backwards
    assert book.record("a", 1300, 130.0, hold=900) == 501_000  # still reported
    assert book.record("a", 90_000, 1000.0, hold=900) is None  # up 900s: cleared
    assert book.record("b", 10, 1000.0, hold=900) is None  # first sight is not a restart


def test_uptime_wrap_is_not_a_restart() -> None:
    book = snmp.UptimeBook()
    near = (1 << 32) - 1000
    assert book.record("a", near, 100.0, hold=900) is None
    assert book.record("a", 1000, 120.0, hold=900) is None  # 2000 ticks = 20 s later
    assert book.record("a", 500, 130.0, hold=900) == 1000  # a real restart after the wrap


def test_error_class() -> None:
    from pysnmp.proto import errind

    assert error_class(errind.requestTimedOut) is FailureClass.TIMEOUT
    assert error_class(errind.wrongDigest) is FailureClass.AUTH
    assert error_class(errind.unknownUserName) is FailureClass.AUTH
    assert error_class(errind.encryptionError) is FailureClass.INTERNAL
    assert error_class(errind.parseError) is FailureClass.PROTOCOL
