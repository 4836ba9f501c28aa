"""`dns` check against a tiny DNS server on 127.0.0.1: records, expectations, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from checks import dns as dns_check
from nocd.model import FailureClass, Severity
from tests.integration import dnsserver


@pytest.fixture
async def port() -> AsyncIterator[int]:
    transport, _, p = await dnsserver.start()
    try:
        yield p
    finally:
        transport.close()


def make(port: int, target: str, **extra: Any) -> dns_check.Config:
    return dns_check.Config.model_validate(
        {
            "name": "dns-check",
            "type": "dns",
            "target": target,
            "timeout": "1s",
            "resolver": f"127.0.0.1:{port}",
            **extra,
        }
    )


async def run(cfg: dns_check.Config) -> Any:
    obs = await dns_check.probe(cfg, asyncio.get_running_loop().time() + cfg.timeout)
    return obs, dns_check.evaluate(obs, cfg)


async def test_a_records_with_expectations(port: int) -> None:
    obs, verdict = await run(make(port, "pbx.example.com", expect=["192.0.2.10"]))
    assert obs.ok and verdict.ok, obs.detail
    assert sorted(obs.values["answers"]) == ["192.0.2.10", "192.0.2.11"]
    obs, verdict = await run(
        make(port, "pbx.example.com", expect=["192.0.2.10"], expect_exactly=True)
    )
    assert verdict.severity is Severity.DEGRADED
    assert obs.detail == "unexpected in answer: 192.0.2.11"


async def test_aaaa_normalized(port: int) -> None:
    obs, _ = await run(
        make(port, "pbx.example.com", record_type="AAAA", expect=["2001:DB8:0:0::10"])
    )
    assert obs.ok, obs.detail


async def test_srv_for_sip_domain(port: int) -> None:
    cfg = make(
        port,
        "_sip._udp.example.com",
        record_type="SRV",
        expect=["10 60 5060 sip1.example.com", "20 40 5060 SIP2.example.com."],
    )
    obs, verdict = await run(cfg)
    assert verdict.ok, obs.detail
    cfg = make(
        port, "_sip._udp.example.com", record_type="SRV", expect=["10 60 5060 sip3.example.com"]
    )
    obs, verdict = await run(cfg)
    assert obs.failure is FailureClass.CONTENT
    assert obs.detail == "missing from answer: 10 60 5060 sip3.example.com"


async def test_naptr(port: int) -> None:
    cfg = make(
        port,
        "example.com",
        record_type="NAPTR",
        expect=['10 100 "S" "SIP+D2U" "" _sip._udp.example.com.'],
    )
    obs, _ = await run(cfg)
    assert obs.ok, obs.detail
    assert len(obs.values["answers"]) == 2


@pytest.mark.parametrize(
    ("target", "rtype", "failure", "detail"),
    [
        ("nowhere.example.com", "A", FailureClass.DNS, "nowhere.example.com does not exist"),
        ("pbx.example.com", "SRV", FailureClass.CONTENT, "no SRV records for pbx.example.com"),
        ("broken.example.com", "A", FailureClass.SERVER_ERROR, "SERVFAIL"),
        ("silent.example.com", "A", FailureClass.TIMEOUT, "no DNS answer in time"),
    ],
)
async def test_failures(
    port: int, target: str, rtype: str, failure: FailureClass, detail: str
) -> None:
    obs, verdict = await run(make(port, target, record_type=rtype))
    assert obs.failure is failure
    assert detail in obs.detail
    expected = Severity.DEGRADED if failure is FailureClass.CONTENT else Severity.CRITICAL
    assert verdict.severity is expected


async def test_timeout_fits_deadline(port: int) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run(make(port, "silent.example.com"))
    assert loop.time() - start < 1.3


def test_slow_answer_is_degraded() -> None:
    from nocd.model import Observation

    cfg = make(53, "pbx.example.com", degraded_after="100ms")
    verdict = dns_check.evaluate(Observation.success("2 A", 0.25, answers=[]), cfg)
    assert (verdict.severity, verdict.failure) == (Severity.DEGRADED, FailureClass.SLOW)
    assert verdict.reason == "answer took 250 ms (limit 100 ms)"
    assert dns_check.evaluate(Observation.success("2 A", 0.05), cfg).ok


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"resolver": "dns.example.com"}, "resolver must be an IP address"),
        ({"record_type": "SPF"}, "record_type"),
        ({"target": "a..b"}, "invalid DNS name"),
    ],
)
def test_invalid_configs(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        dns_check.Config.model_validate(
            {"name": "d", "type": "dns", "target": "example.com", **extra}
        )
    assert message in str(err.value)
