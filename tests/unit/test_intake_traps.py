"""Unit tests of trap rules (`snmp_trap`) and the receiver's matching and counting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from checks import trap as t
from nocd.intake.traps import TrapListenerConfig, TrapReceiver
from nocd.model import FailureClass, Observation, Severity

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"


def rule(**extra: Any) -> t.Config:
    raw: dict[str, Any] = {
        "name": "uplink",
        "type": "snmp_trap",
        "trap_oid": LINK_DOWN,
        "clear_oid": LINK_UP,
        "varbinds": [{"oid": IF_INDEX, "equals": 2}, {"oid": IF_DESCR, "name": "port"}],
        "clear_varbinds": [{"oid": IF_INDEX, "equals": 2}],
        "message": "uplink {port} down on {source} ({unknown})",
        "sources": ["192.0.2.0/24"],
    }
    raw.update(extra)
    return t.Config.model_validate(raw)


def trap(oid: str, source: str = "192.0.2.7", **vbs: str) -> t.Trap:
    return t.Trap(source, oid, {k.replace("_", "."): v for k, v in vbs.items()})


def vb(index: int, descr: str | None = None) -> dict[str, str]:
    out = {f"{IF_INDEX}.{index}": str(index)}
    if descr is not None:
        out[f"{IF_DESCR}.{index}"] = descr
    return out


@pytest.mark.parametrize(
    ("incoming", "outcome"),
    [
        (t.Trap("192.0.2.7", LINK_DOWN, vb(2, "ge-0/0/2")), "fire"),  # matching interface
        (t.Trap("192.0.2.7", LINK_DOWN, vb(3)), None),  # other interface
        (t.Trap("198.51.100.1", LINK_DOWN, vb(2)), None),  # sender not allowed
        (t.Trap("192.0.2.7", LINK_UP, vb(2)), "clear"),  # clearing trap, same interface
        (t.Trap("192.0.2.7", LINK_UP, vb(5)), None),  # clearing trap, other interface
        (t.Trap("192.0.2.7", "1.3.6.1.6.3.1.1.5.1", {}), None),  # coldStart: not this rule
        (t.Trap("not-an-ip", LINK_DOWN, vb(2)), None),  # garbage source never matches
    ],
)
def test_match(incoming: t.Trap, outcome: str | None) -> None:
    assert t.match(rule(), incoming) == outcome


def test_message_template_and_observation() -> None:
    obs = t.fired(rule(), t.Trap("192.0.2.7", LINK_DOWN, vb(2, "ge-0/0/2")))
    assert obs.detail == "uplink ge-0/0/2 down on 192.0.2.7 ({unknown})"
    assert obs.failure is FailureClass.EXTERNAL
    assert obs.values["trap_oid"] == LINK_DOWN
    v = t.evaluate(obs, rule())
    assert (v.severity, v.failure) == (Severity.CRITICAL, FailureClass.EXTERNAL)
    assert t.evaluate(obs, rule(severity="degraded")).severity is Severity.DEGRADED
    assert t.evaluate(t.cleared(None, 60), rule()).ok


@pytest.mark.parametrize(
    ("cond", "value", "holds"),
    [
        ({"equals": "up"}, "up", True),
        ({"not_equals": "up"}, "up", False),
        ({"matches": "^ge-"}, "ge-0/0/1", True),
        ({"above": 40}, "41.5", True),
        ({"above": 40}, "39", False),
        ({"below": 10}, "n/a", False),
        ({}, None, True),  # naming only: absent is fine
        ({"equals": "x"}, None, False),  # a tested value must be present
    ],
)
def test_varbind_conditions(cond: dict[str, Any], value: str | None, holds: bool) -> None:
    c = t.VarbindCondition.model_validate({"oid": "1.3.6.1.4.1.9.1", **cond})
    varbinds = {} if value is None else {"1.3.6.1.4.1.9.1.0": value}
    assert c.holds(varbinds) is holds


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"trap_oid": "linkDown"}, "not a numeric OID"),
        ({"sources": ["pbx.example.com"]}, "not an IP address or network"),
        ({"severity": "ok"}, "severity cannot be ok"),
        ({"clear_oid": None}, "clear_varbinds needs clear_oid"),
        ({"varbinds": [{"oid": "1.3.6.1", "matches": "("}]}, "invalid regular expression"),
    ],
)
def test_invalid_rules(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        rule(**extra)
    assert message in str(err.value)


async def test_probe_says_passive() -> None:
    obs = await t.probe(rule(), 0.0)
    assert obs.detail == t.PASSIVE_DETAIL
    assert t.evaluate(obs, rule()).severity is Severity.UNKNOWN
    assert t.Config.passive is True


def test_listener_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_COMM", "s3cret-community")
    cfg = TrapListenerConfig.model_validate(
        {"listen": "[::1]:1162", "communities": ["${T_COMM}"], "engine_id": "0x8000000001020304"}
    )
    assert cfg.address() == ("::1", 1162)
    assert cfg.engine_id == "8000000001020304"
    assert "s3cret-community" not in repr(cfg)
    with pytest.raises(ValidationError, match="secrets may not be written in clear"):
        TrapListenerConfig.model_validate({"communities": ["public"]})
    with pytest.raises(ValidationError, match="not an SNMP engine ID"):
        TrapListenerConfig.model_validate({"engine_id": "xyz"})
    with pytest.raises(ValidationError, match="listen must be host:port"):
        TrapListenerConfig.model_validate({"listen": "0.0.0.0"})


async def test_receiver_counts_and_survives_a_failing_submit() -> None:
    seen: list[tuple[str, Observation]] = []

    def submit(name: str, obs: Observation) -> None:
        seen.append((name, obs))
        if len(seen) == 1:
            raise RuntimeError("pipeline hiccup")

    rx = TrapReceiver(TrapListenerConfig(listen="127.0.0.1:0"), [rule(clear_after="1h")], submit)
    rx._on_notification(_Engine(), None, None, None, [], None)  # no snmpTrapOID at all
    assert rx.unknown == 1
    rx.handle(t.Trap("192.0.2.7", LINK_DOWN, vb(2)))  # submit raises: counted, not raised
    assert rx.errors == 1
    rx.handle(t.Trap("192.0.2.7", LINK_UP, vb(2)))
    assert [n for n, _ in seen] == ["uplink", "uplink"]
    assert rx.received == 3 and rx.unknown == 1
    await rx.stop()
    assert asyncio.get_running_loop() is not None


class _Engine:
    class message_dispatcher:
        @staticmethod
        def get_transport_info(_ref: object) -> tuple[object, tuple[str, int]]:
            return (), ("192.0.2.9", 1024)
