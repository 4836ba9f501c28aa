"""Trap receiver against net-snmp's snmptrap/snmpinform: v1, v2c, v3 traps and informs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from checks import trap as trap_check
from nocd.intake.traps import TrapListenerConfig, TrapReceiver
from nocd.model import FailureClass, Observation, Severity

pytestmark = pytest.mark.peer

COMMUNITY = "nocd-trap-community"
USER = "nocdtrap"
AUTH_KEY = "trap-auth-0123"
PRIV_KEY = "trap-priv-4567"
SENDER_ENGINE = "0x8000000001020304"
UPS_ON_BATTERY = "1.3.6.1.4.1.318.0.5"  # APC PowerNet: upsOnBattery
UPS_ON_LINE = "1.3.6.1.4.1.318.0.9"  # APC PowerNet: powerRestored
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
QUIET = {"MIBS": "", "MIBDIRS": "/nonexistent"}


def rules() -> list[trap_check.Config]:
    raw: list[dict[str, Any]] = [
        {
            "name": "ups-main-street-battery",
            "type": "snmp_trap",
            "site": "main-street",
            "trap_oid": UPS_ON_BATTERY,
            "clear_oid": UPS_ON_LINE,
            "severity": "critical",
            "message": "UPS at {source} on battery: {why}",
            "varbinds": [{"oid": "1.3.6.1.4.1.318.2.3.3", "name": "why"}],
        },
        {
            "name": "pbx-uplink",
            "type": "snmp_trap",
            "trap_oid": LINK_DOWN,
            "varbinds": [{"oid": IF_INDEX, "equals": 2}],
            "clear_oid": LINK_UP,
            "clear_varbinds": [{"oid": IF_INDEX, "equals": 2}],
            "severity": "degraded",
            "sources": ["127.0.0.0/8"],
        },
        {
            "name": "gateway-cold-start",
            "type": "snmp_trap",
            "trap_oid": "1.3.6.1.4.1.8072.4.0.7",
            "clear_after": "1s",
            "severity": "low",
        },
    ]
    return [trap_check.Config.model_validate(r) for r in raw]


class Sink:
    """Collects submitted observations and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Observation]] = []
        self.read = 0
        self.event = asyncio.Event()

    def __call__(self, name: str, obs: Observation) -> None:
        self.items.append((name, obs))
        self.event.set()

    async def next(self, wait: float = 5.0) -> tuple[str, Observation]:
        async with asyncio.timeout(wait):
            while len(self.items) <= self.read:
                self.event.clear()
                await self.event.wait()
        self.read += 1
        return self.items[self.read - 1]


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TrapReceiver, Sink]]:
    monkeypatch.setenv("T_TRAP_COMMUNITY", COMMUNITY)
    monkeypatch.setenv("T_TRAP_AUTH", AUTH_KEY)
    monkeypatch.setenv("T_TRAP_PRIV", PRIV_KEY)
    cfg = TrapListenerConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "communities": ["${T_TRAP_COMMUNITY}"],
            "v3_users": [
                {
                    "user": USER,
                    "auth_key": "${T_TRAP_AUTH}",
                    "priv_key": "${T_TRAP_PRIV}",
                    "engine_ids": [SENDER_ENGINE],
                }
            ],
            "engine_id": "0x80000000010a0b0c0d",
        }
    )
    sink = Sink()
    rx = TrapReceiver(cfg, rules(), sink)
    await rx.start()
    try:
        yield rx, sink
    finally:
        await rx.stop()


async def net_snmp(tool: str, *args: str) -> tuple[int, str]:
    from tests.peers import require_binary

    binary = require_binary(tool)
    proc = await asyncio.create_subprocess_exec(
        binary,
        *args,
        env={**os.environ, **QUIET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(10):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")


V3 = ["-v3", "-u", USER, "-l", "authPriv", "-a", "SHA", "-A", AUTH_KEY, "-x", "AES", "-X", PRIV_KEY]


async def test_v2c_trap_opens_and_clearing_trap_resolves(
    receiver: tuple[TrapReceiver, Sink],
) -> None:
    rx, sink = receiver
    dest = f"127.0.0.1:{rx.port}"
    rc, out = await net_snmp(
        "snmptrap",
        "-v2c",
        "-c",
        COMMUNITY,
        dest,
        "",
        UPS_ON_BATTERY,
        "1.3.6.1.4.1.318.2.3.3.0",
        "s",
        "input voltage out of range",
    )
    assert rc == 0, out
    name, obs = await sink.next()
    assert name == "ups-main-street-battery"
    assert not obs.ok and obs.failure is FailureClass.EXTERNAL
    assert obs.detail == "UPS at 127.0.0.1 on battery: input voltage out of range"
    rule = rules()[0]
    verdict = trap_check.evaluate(obs, rule)
    assert verdict.severity is Severity.CRITICAL

    rc, out = await net_snmp("snmptrap", "-v2c", "-c", COMMUNITY, dest, "", UPS_ON_LINE)
    assert rc == 0, out
    name, obs = await sink.next()
    assert name == "ups-main-street-battery" and obs.ok
    assert trap_check.evaluate(obs, rule).ok
    assert rx.received == 2 and rx.unknown == 0 and rx.errors == 0


async def test_v3_trap_with_sender_engine_id(receiver: tuple[TrapReceiver, Sink]) -> None:
    rx, sink = receiver
    rc, out = await net_snmp(
        "snmptrap",
        *V3,
        "-e",
        SENDER_ENGINE,
        f"127.0.0.1:{rx.port}",
        "",
        LINK_DOWN,
        f"{IF_INDEX}.2",
        "i",
        "2",
    )
    assert rc == 0, out
    name, obs = await sink.next()
    assert name == "pbx-uplink" and not obs.ok
    assert trap_check.evaluate(obs, rules()[1]).severity is Severity.DEGRADED
    # linkUp for another interface does not clear it; for interface 2 it does.
    await net_snmp(
        "snmptrap",
        *V3,
        "-e",
        SENDER_ENGINE,
        f"127.0.0.1:{rx.port}",
        "",
        LINK_UP,
        f"{IF_INDEX}.7",
        "i",
        "7",
    )
    await net_snmp(
        "snmptrap",
        *V3,
        "-e",
        SENDER_ENGINE,
        f"127.0.0.1:{rx.port}",
        "",
        LINK_UP,
        f"{IF_INDEX}.2",
        "i",
        "2",
    )
    name, obs = await sink.next()
    assert name == "pbx-uplink" and obs.ok
    assert len(sink.items) == 2
    assert rx.unknown == 1  # the linkUp for interface 7


async def test_informs_are_answered_v2c_and_v3(receiver: tuple[TrapReceiver, Sink]) -> None:
    rx, sink = receiver
    dest = f"127.0.0.1:{rx.port}"
    # snmpinform exits 0 only when the receiver acknowledged the inform.
    rc, out = await net_snmp("snmpinform", *V3, "-t", "2", "-r", "0", dest, "", UPS_ON_BATTERY)
    assert rc == 0, out
    name, obs = await sink.next()
    assert name == "ups-main-street-battery"
    assert obs.detail == "UPS at 127.0.0.1 on battery: "
    rc, out = await net_snmp(
        "snmpinform",
        "-v2c",
        "-c",
        COMMUNITY,
        "-t",
        "2",
        "-r",
        "0",
        dest,
        "",
        "1.3.6.1.4.1.8072.4.0.7",
    )
    assert rc == 0, out
    name, obs = await sink.next()
    assert name == "gateway-cold-start" and not obs.ok


async def test_v1_trap_and_clear_after_timeout(receiver: tuple[TrapReceiver, Sink]) -> None:
    rx, sink = receiver
    # v1: enterprise 1.3.6.1.4.1.8072.4, generic 6 (enterpriseSpecific), specific 7.
    rc, out = await net_snmp(
        "snmptrap",
        "-v1",
        "-c",
        COMMUNITY,
        f"127.0.0.1:{rx.port}",
        "1.3.6.1.4.1.8072.4",
        "127.0.0.1",
        "6",
        "7",
        "",
    )
    assert rc == 0, out
    name, obs = await sink.next()
    assert name == "gateway-cold-start" and not obs.ok
    assert trap_check.evaluate(obs, rules()[2]).severity is Severity.LOW
    loop = asyncio.get_running_loop()
    start = loop.time()
    name, obs = await sink.next()
    assert name == "gateway-cold-start" and obs.ok
    assert 0.8 < loop.time() - start < 3
    assert "no new trap" in obs.detail


async def test_wrong_credentials_and_unknown_traps_change_nothing(
    receiver: tuple[TrapReceiver, Sink],
) -> None:
    rx, sink = receiver
    dest = f"127.0.0.1:{rx.port}"
    await net_snmp("snmptrap", "-v2c", "-c", "wrong-community", dest, "", UPS_ON_BATTERY)
    bad_v3 = [*V3]
    bad_v3[bad_v3.index(AUTH_KEY)] = "not-the-auth-key"
    await net_snmp("snmptrap", *bad_v3, "-e", SENDER_ENGINE, dest, "", UPS_ON_BATTERY)
    await net_snmp("snmptrap", "-v2c", "-c", COMMUNITY, dest, "", "1.3.6.1.4.1.99999.0.1")
    # Garbage datagram: not SNMP at all.
    tr, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", rx.port)
    )
    tr.sendto(b"\x30\x03garbage")
    tr.close()
    # A known trap afterwards still works: the receiver survived all of the above.
    await net_snmp("snmptrap", "-v2c", "-c", COMMUNITY, dest, "", UPS_ON_LINE)
    name, obs = await sink.next()
    assert name == "ups-main-street-battery" and obs.ok
    assert len(sink.items) == 1
    assert rx.unknown == 1
    assert rx.received == 2
