"""`snmp` check against a real net-snmp snmpd on 127.0.0.1: v2c, v3, thresholds, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks import snmp
from checks.resources import close_all
from nocd.model import FailureClass, Severity
from tests.integration import snmpd as agent

pytestmark = pytest.mark.peer


@pytest.fixture(autouse=True)
async def _close_resources() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SNMP_COMMUNITY", agent.COMMUNITY)
    monkeypatch.setenv("T_SNMP_AUTH", agent.AUTH_KEY)
    monkeypatch.setenv("T_SNMP_PRIV", agent.PRIV_KEY)
    monkeypatch.setenv("T_SNMP_WRONG", "not-the-passphrase")


@pytest.fixture
def daemon(tmp_path: Path, secrets: None) -> Iterator[agent.Snmpd]:
    d = agent.Snmpd(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def make(target: str, **extra: Any) -> snmp.Config:
    raw: dict[str, Any] = {
        "name": "ups-main-street",
        "type": "snmp",
        "target": target,
        "timeout": "2s",
        "community": "${T_SNMP_COMMUNITY}",
        "oids": [
            {
                "oid": agent.TEMPERATURE_OID,
                "name": "temperature",
                "degraded_above": 40,
                "critical_above": 60,
            },
            {"oid": agent.ENDPOINTS_OID, "name": "registered_endpoints", "critical_below": 10},
            {"oid": agent.IF_OPER_STATUS_1, "name": "if_oper_status", "equals": 1},
            {"oid": agent.STATUS_TEXT_OID, "name": "status", "equals": "running"},
        ],
    }
    raw.update(extra)
    return snmp.Config.model_validate(raw)


async def run(cfg: snmp.Config) -> tuple[Any, Any]:
    deadline = asyncio.get_running_loop().time() + cfg.timeout
    obs = await snmp.probe(cfg, deadline)
    return obs, snmp.evaluate(obs, cfg)


async def test_v2c_reads_values_and_judges_thresholds(daemon: agent.Snmpd) -> None:
    obs, verdict = await run(make(daemon.address))
    assert obs.ok, obs.detail
    assert obs.values["oids"]["temperature"] == 42
    assert obs.values["oids"]["registered_endpoints"] == 73
    assert obs.values["oids"]["if_oper_status"] == 1
    assert obs.values["text"]["status"] == "running"
    assert obs.values["sys_uptime"] >= 0
    # 42 is above the degraded limit (40) but below the critical one (60).
    assert verdict.severity is Severity.DEGRADED
    assert verdict.failure is FailureClass.THRESHOLD
    assert "temperature is 42, above 40" in verdict.reason


async def test_critical_threshold_and_mismatch(daemon: agent.Snmpd) -> None:
    cfg = make(
        daemon.address,
        oids=[
            {"oid": agent.ENDPOINTS_OID, "name": "registered_endpoints", "critical_below": 100},
            {
                "oid": agent.STATUS_TEXT_OID,
                "name": "status",
                "equals": "standby",
                "on_mismatch": "degraded",
            },
        ],
    )
    _, verdict = await run(cfg)
    assert verdict.severity is Severity.CRITICAL
    assert verdict.failure is FailureClass.THRESHOLD
    assert "registered_endpoints is 73, below 100" in verdict.reason
    assert "status is running, expected standby" in verdict.reason


async def test_missing_oid_is_a_config_failure(daemon: agent.Snmpd) -> None:
    cfg = make(daemon.address, oids=[{"oid": "1.3.6.1.4.1.8072.9999.77.0", "name": "nope"}])
    obs, verdict = await run(cfg)
    assert not obs.ok
    assert obs.failure is FailureClass.CONFIG
    assert "1.3.6.1.4.1.8072.9999.77.0" in obs.detail
    assert verdict.severity is Severity.DEGRADED


@pytest.mark.parametrize(
    ("user", "auth", "priv"),
    [
        (agent.V3_USER, "sha", "aes"),
        (agent.V3_AUTH_USER, "sha", "none"),
        (agent.V3_NOAUTH_USER, "none", "none"),
    ],
)
async def test_v3_security_levels(daemon: agent.Snmpd, user: str, auth: str, priv: str) -> None:
    v3: dict[str, Any] = {"user": user, "auth_protocol": auth, "priv_protocol": priv}
    if auth != "none":
        v3["auth_key"] = "${T_SNMP_AUTH}"
    if priv != "none":
        v3["priv_key"] = "${T_SNMP_PRIV}"
    obs, _ = await run(make(daemon.address, version="3", community=None, v3=v3))
    assert obs.ok, obs.detail
    assert obs.values["oids"]["temperature"] == 42


async def test_v3_wrong_passphrase_is_auth_failure(daemon: agent.Snmpd) -> None:
    v3 = {"user": agent.V3_USER, "auth_key": "${T_SNMP_WRONG}", "priv_key": "${T_SNMP_PRIV}"}
    obs, verdict = await run(make(daemon.address, version="3", community=None, v3=v3))
    assert not obs.ok
    assert obs.failure is FailureClass.AUTH
    assert "not-the-passphrase" not in obs.detail + verdict.reason
    assert verdict.failure is FailureClass.AUTH


async def test_stopped_agent_is_timeout_within_deadline(daemon: agent.Snmpd) -> None:
    daemon.stop()
    cfg = make(daemon.address, timeout="1s")
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs, verdict = await run(cfg)
    assert loop.time() - start < 1.3
    assert obs.failure is FailureClass.TIMEOUT
    assert verdict.severity is Severity.CRITICAL
    assert agent.COMMUNITY not in obs.detail


async def test_restart_is_detected(daemon: agent.Snmpd) -> None:
    cfg = make(daemon.address, oids=[])
    await asyncio.sleep(1.1)  # let uptime grow so a fresh agent reads lower
    first, verdict = await run(cfg)
    assert first.ok and verdict.ok, verdict.reason
    assert first.values["sys_uptime"] >= 1.0
    daemon.stop()
    daemon.start()
    second, verdict = await run(cfg)
    assert second.values["restarted"] is True
    assert second.values["sys_uptime"] < first.values["sys_uptime"]
    assert verdict.failure is FailureClass.RESTARTED
    assert verdict.severity is Severity.DEGRADED
    assert verdict.reason.startswith("device restarted")
    # The restart stays reported while uptime is below restart_hold (default 15m).
    _, verdict = await run(cfg)
    assert verdict.failure is FailureClass.RESTARTED


async def test_v3_restart_is_detected(daemon: agent.Snmpd) -> None:
    v3 = {"user": agent.V3_USER, "auth_key": "${T_SNMP_AUTH}", "priv_key": "${T_SNMP_PRIV}"}
    cfg = make(daemon.address, version="3", community=None, v3=v3, oids=[])
    await asyncio.sleep(1.1)
    first, _ = await run(cfg)
    assert first.ok, first.detail
    daemon.stop()
    daemon.start()
    second, verdict = await run(cfg)
    assert second.ok, second.detail
    assert verdict.failure is FailureClass.RESTARTED


async def test_verbose_transcript(daemon: agent.Snmpd) -> None:
    cfg = make(daemon.address)
    obs, lines = await snmp.probe_verbose(cfg, asyncio.get_running_loop().time() + 2)
    assert obs.ok
    assert lines[0].startswith(f"SNMP v2c GET {daemon.address}")
    assert any(agent.TEMPERATURE_OID in line and "= 42" in line for line in lines)


async def test_v3_agent_with_new_engine_id_is_rediscovered(daemon: agent.Snmpd) -> None:
    # A replaced or factory-reset device comes back with another engine ID.
    v3 = {"user": agent.V3_USER, "auth_key": "${T_SNMP_AUTH}", "priv_key": "${T_SNMP_PRIV}"}
    cfg = make(daemon.address, version="3", community=None, v3=v3, oids=[], timeout="1s")
    first, _ = await run(cfg)
    assert first.ok, first.detail
    daemon.stop()
    daemon.engine_id = "nocd-replaced-agent"
    daemon.start()
    second, _ = await run(cfg)
    third, _ = await run(cfg)
    assert not second.ok or third.ok  # at most one probe is lost to rediscovery
    assert third.ok, third.detail
