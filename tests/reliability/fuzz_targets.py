"""The network parsers the fuzzer (tests/reliability/fuzz_sip.py) feeds, each as `fn(data)`.

A target swallows only its parser's own documented error; anything else escapes and is a
finding. Kept apart from the driver so that the driver can import this module with coverage
instrumentation on, and a child process can re-time slow inputs with it off.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from checks import alertmanager as am_check
from checks import trap as trap_check
from checks.sip.digest import ChallengeError, best_challenge, digest_response, parse_challenge
from checks.sip.message import SipParseError, build_response, params, parse, parse_via
from nocd.intake import alertmanager as am_intake
from nocd.intake.traps import TrapListenerConfig, TrapReceiver

# The trap seeds in tests/data/fuzz_seeds were captured from net-snmp's snmptrap with these.
COMMUNITY = "fuzz-community"
V3_USER, V3_AUTH, V3_PRIV = "nocdfuzz", "fuzz-auth-0123", "fuzz-priv-4567"
V3_SENDER_ENGINE = "0x8000000001020304"


def fuzz_sip(data: bytes) -> None:
    """Parse as a datagram and as a stream message, then use it as nocd's SIP code does.

    The transport matches replies by the top Via's branch; REGISTER reads CSeq, Contact and
    the strongest digest challenge; the responder answers requests (copying every Via).
    """
    try:
        parse(data, datagram=False)
    except SipParseError:
        pass
    try:
        msg = parse(data)
    except SipParseError:
        return
    msg.top_via_branch()
    msg.header("call-id")
    msg.header_values("contact")
    for name in ("to", "from"):
        params(msg.header(name) or "")
    try:
        msg.cseq()
    except SipParseError:
        pass
    vias = msg.header_values("via")
    if vias:
        try:
            parse_via(vias[0])
        except SipParseError:
            pass
    if msg.is_request:
        build_response(msg, 200, "OK", to_tag="fuzz", received=("127.0.0.1", 5060))
    elif msg.status in (401, 407):
        try:
            ch = best_challenge(msg)
        except ChallengeError:
            return
        digest_response(ch, "100", "secret", "REGISTER", "sip:example.com", cnonce="0a1b")


def fuzz_digest(data: bytes) -> None:
    """A WWW-Authenticate / Proxy-Authenticate value straight from a reply."""
    try:
        ch = parse_challenge(data.decode("utf-8", "replace"), proxy=data[:1] == b"P")
    except ChallengeError:
        return
    digest_response(ch, "100", "secret", "REGISTER", "sip:example.com", nc=2, cnonce="0a1b")


class AlertmanagerTarget:
    """The webhook's body validation and rule matching, with rules like an operator writes."""

    def __init__(self) -> None:
        rules = [
            am_check.Config.model_validate(
                {"name": "pbx-down", "type": "alertmanager", "matchers": ['job=~"pbx-.*"']}
            ),
            am_check.Config.model_validate(
                {
                    "name": "disk",
                    "type": "alertmanager",
                    "matchers": ['alertname="DiskFull"', 'severity!="none"'],
                }
            ),
        ]
        self.submitted = 0
        self.intake = am_intake.AlertmanagerIntake(rules, self._submit)

    def _submit(self, _name: str, _obs: Any) -> None:
        self.submitted += 1

    def __call__(self, data: bytes) -> None:
        try:
            payload = am_intake.WebhookPayload.model_validate_json(data)
        except ValidationError as exc:
            am_intake._first_error(exc)  # the 400's message is built from it
            return
        self.intake.apply(payload)
        if len(self.intake.firing) > 1000:  # the fuzzer's many fingerprints: keep memory flat
            self.intake.firing.clear()


class TrapTarget:
    """The real trap receiver's pysnmp engine, fed datagrams as its UDP transport would."""

    def __init__(self) -> None:
        os.environ["FUZZ_TRAP_COMMUNITY"] = COMMUNITY
        os.environ["FUZZ_TRAP_AUTH"] = V3_AUTH
        os.environ["FUZZ_TRAP_PRIV"] = V3_PRIV
        cfg = TrapListenerConfig.model_validate(
            {
                "listen": "127.0.0.1:0",
                "communities": ["${FUZZ_TRAP_COMMUNITY}"],
                "v3_users": [
                    {
                        "user": V3_USER,
                        "auth_key": "${FUZZ_TRAP_AUTH}",
                        "priv_key": "${FUZZ_TRAP_PRIV}",
                        "engine_ids": [V3_SENDER_ENGINE],
                    }
                ],
                "engine_id": "0x80000000010a0b0c0d",
            }
        )
        rules = [
            trap_check.Config.model_validate(r)
            for r in (
                {
                    "name": "ups",
                    "type": "snmp_trap",
                    "trap_oid": "1.3.6.1.4.1.318.0.5",
                    "clear_oid": "1.3.6.1.4.1.318.0.9",
                    "message": "UPS {source}: {why}",
                    "varbinds": [{"oid": "1.3.6.1.4.1.318.2.3.3", "name": "why"}],
                },
                {
                    "name": "link",
                    "type": "snmp_trap",
                    "trap_oid": "1.3.6.1.6.3.1.1.5.3",
                    "varbinds": [{"oid": "1.3.6.1.2.1.2.2.1.1", "equals": 2}],
                    "sources": ["127.0.0.0/8"],
                },
            )
        ]
        from pysnmp.carrier.asyncio.dgram import udp

        self.loop = asyncio.new_event_loop()
        self.rx = TrapReceiver(cfg, rules, lambda _n, _o: None)
        self.loop.run_until_complete(self.rx.start())
        self.domain = udp.DOMAIN_NAME
        # Informs are answered: to a loopback port of ours, drained now and then.
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setblocking(False)
        self.address = udp.UdpTransportAddress(self.sink.getsockname())
        self.calls = 0

    def __call__(self, data: bytes) -> None:
        errors = self.rx.errors
        # Exactly what the receiver's UDP transport calls for each datagram.
        self.rx.receive_datagram(self.rx._engine, self.domain, self.address, data)
        self.calls += 1
        if self.calls % 256 == 0:  # run what pysnmp scheduled (inform responses, timers)
            self.loop.run_until_complete(asyncio.sleep(0))
            try:
                while self.sink.recv(65535):
                    pass
            except BlockingIOError:
                pass
        if self.rx.errors != errors:
            raise RuntimeError("the trap receiver's rule handling failed")


class SnmpReplyTarget:
    """The v2c GET client's reply parsing (checks/snmp_ber): framing peek, then the PDU."""

    def __init__(self) -> None:
        from checks import snmp_ber

        self.ber = snmp_ber
        # The OIDs of the seeds (tests/data/fuzz_seeds/snmp_reply_*.bin answer these).
        self.tpl = snmp_ber.template(
            COMMUNITY.encode(), ("1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.2.2.1.10.1")
        )

    def __call__(self, data: bytes) -> None:
        try:
            _request_id, _community, rest, problem = self.ber.peek(data)
            if not problem:  # what snmp_v2c does: a framing problem ends it here
                self.ber.parse(data, rest, self.tpl)
        except self.ber.MalformedReply:
            pass


def make_targets(names: list[str]) -> dict[str, Callable[[bytes], None]]:
    """The named targets, ready to call."""
    every: dict[str, Callable[[], Callable[[bytes], None]]] = {
        "sip": lambda: fuzz_sip,
        "digest": lambda: fuzz_digest,
        "alertmanager": AlertmanagerTarget,
        "trap": TrapTarget,
        "snmp_v2c": SnmpReplyTarget,
    }
    return {n: every[n]() for n in names}
