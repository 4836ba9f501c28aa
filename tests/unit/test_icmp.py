"""Unit tests of the `icmp` check: packets, parsing, judgement, config."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from pydantic import ValidationError

from checks import icmp
from nocd.model import FailureClass, Observation, Severity


def cfg(**extra: Any) -> icmp.Config:
    return icmp.Config.model_validate({"name": "p", "type": "icmp", "target": "192.0.2.1", **extra})


def test_checksum_known_vector() -> None:
    # RFC 1071 example bytes: sum 0xddf2 → checksum 0x220d
    assert icmp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    packet = icmp.echo_request(socket.AF_INET, 0x1234, 7, b"payload!")
    assert icmp.checksum(packet) == 0  # a correct checksum sums to zero


def test_parse_raw_ipv4_reply_and_ignore_requests() -> None:
    reply = bytearray(icmp.echo_request(socket.AF_INET, 1, 9, b"tokentok"))
    reply[0] = 0  # echo reply
    ip_header = bytes([0x45]) + bytes(19)
    assert icmp.parse_reply(socket.AF_INET, ip_header + bytes(reply), raw=True) == (9, b"tokentok")
    assert icmp.parse_reply(socket.AF_INET, bytes(reply), raw=False) == (9, b"tokentok")
    request = icmp.echo_request(socket.AF_INET, 1, 9, b"tokentok")
    assert icmp.parse_reply(socket.AF_INET, ip_header + request, raw=True) is None
    assert icmp.parse_reply(socket.AF_INET, b"\x00\x00", raw=False) is None
    v6 = struct.pack("!BBHHH", 129, 0, 0, 1, 3) + b"x"
    assert icmp.parse_reply(socket.AF_INET6, v6, raw=True) == (3, b"x")


def obs(loss: float, rtt: float = 0.01) -> Observation:
    return Observation.success("x", 0.1, loss_pct=loss, rtt_avg_s=rtt)


@pytest.mark.parametrize(
    ("observation", "extra", "severity", "failure"),
    [
        (obs(0), {}, Severity.OK, FailureClass.NONE),  # clean
        (obs(20), {}, Severity.OK, FailureClass.NONE),  # at the degraded limit, not above
        (obs(40), {}, Severity.DEGRADED, FailureClass.THRESHOLD),  # 2 of 5 lost
        (obs(60), {"critical_loss": 50}, Severity.CRITICAL, FailureClass.THRESHOLD),
        (obs(0, 0.3), {"degraded_rtt": "100ms"}, Severity.DEGRADED, FailureClass.SLOW),
        (obs(0, 0.3), {"critical_rtt": "200ms"}, Severity.CRITICAL, FailureClass.SLOW),
        (
            Observation.failed(FailureClass.TIMEOUT, "no echo reply"),
            {},
            Severity.CRITICAL,
            FailureClass.TIMEOUT,
        ),  # total loss
    ],
)
def test_evaluate(
    observation: Observation, extra: dict[str, Any], severity: Severity, failure: FailureClass
) -> None:
    v = icmp.evaluate(observation, cfg(**extra))
    assert (v.severity, v.failure) == (severity, failure)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"count": 20, "spacing": "1s"}, "must fit inside the timeout"),
        ({"degraded_loss": 60, "critical_loss": 50}, "cannot exceed critical_loss"),
        ({"count": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        cfg(**extra)
    assert message in str(err.value)
