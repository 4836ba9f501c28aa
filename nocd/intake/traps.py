"""SNMP trap/inform receiver (v1, v2c, v3) that turns matching traps into check observations.

Run on UDP 162 under systemd with `AmbientCapabilities=CAP_NET_BIND_SERVICE`, or on a high
port (e.g. 1162) that devices send to or that a firewall rule redirects 162 to.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from pydantic import Field, field_validator

from checks import trap as trap_check
from checks.snmp_common import SNMP_TRAP_OID, V3Credentials, plain_value
from nocd.inventory import Strict
from nocd.model import Observation
from nocd.secrets import Secret

log = structlog.get_logger(__name__)

Submit = Callable[[str, Observation], None]
_HEX = re.compile(r"^(0x)?([0-9a-fA-F]{2}){5,32}$")


def _engine_id(v: str) -> str:
    if not _HEX.match(v):
        raise ValueError(f"{v!r} is not an SNMP engine ID (10-64 hex digits, e.g. 0x8000...)")
    return v.removeprefix("0x").lower()


class TrapUser(V3Credentials):
    """A v3 user allowed to send traps/informs; traps need the sender's engine IDs."""

    engine_ids: tuple[str, ...] = Field(
        (), description="engine IDs of devices sending v3 traps as this user (informs need none)"
    )

    @field_validator("engine_ids")
    @classmethod
    def _ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_engine_id(x) for x in v)


class TrapListenerConfig(Strict):
    """Where the trap receiver listens and whom it accepts (communities and keys are secrets)."""

    listen: str = "0.0.0.0:1162"  # unprivileged by default: the hardened unit has no capabilities
    communities: tuple[Secret, ...] = ()
    v3_users: tuple[TrapUser, ...] = ()
    engine_id: str | None = Field(None, description="our engine ID (hex); stable for informs")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[0-9.]+|[A-Za-z0-9.-]+):(\d{1,5})", v)
        if not m or int(m.group(2)) > 65535:
            raise ValueError("listen must be host:port, e.g. 0.0.0.0:162")
        return v

    @field_validator("engine_id")
    @classmethod
    def _eid(cls, v: str | None) -> str | None:
        return None if v is None else _engine_id(v)

    def address(self) -> tuple[str, int]:
        """Host and port to bind."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class TrapReceiver:
    """Receives notifications in the running loop and submits what the rules make of them."""

    def __init__(
        self,
        cfg: TrapListenerConfig,
        rules: Sequence[trap_check.Config],
        submit: Submit,
    ) -> None:
        self.cfg = cfg
        self.rules = tuple(r for r in rules if r.enabled)
        self.submit = submit
        self.received = 0  # notifications decoded and authenticated
        self.unknown = 0  # matched no rule
        self.errors = 0  # failed while handling (logged)
        self.malformed = 0  # datagrams pysnmp's decoder choked on (not its own error)
        self.malformed_by_error: dict[str, int] = {}  # exception type → count, for diagnosis
        self.port = 0
        self._engine: Any = None
        self._receiver: Any = None
        self._clear_timers: dict[str, asyncio.TimerHandle] = {}

    async def start(self) -> None:
        """Bind the UDP socket and start receiving; raises OSError when the bind fails."""
        from pysnmp.carrier.asyncio.dgram import udp, udp6
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import ntfrcv
        from pysnmp.proto.rfc1902 import OctetString

        host, port = self.cfg.address()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)" if port < 1024 else ""
            raise OSError(
                exc.errno, f"cannot listen for traps on {self.cfg.listen}: {exc.strerror}{hint}"
            ) from None
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._engine = engine.SnmpEngine()
        if self.cfg.engine_id:
            # Set after construction: SnmpEngine(snmpEngineID=...) persists boots under the
            # world-writable /tmp/__pysnmp and leaks a file handle.
            (eid,) = self._engine.get_mib_builder().import_symbols(
                "__SNMP-FRAMEWORK-MIB", "snmpEngineID"
            )
            eid.syntax = eid.syntax.clone(OctetString(hexValue=self.cfg.engine_id))
            self._engine.snmpEngineID = eid.syntax
        transport_cls = (
            udp6.Udp6AsyncioTransport if family == socket.AF_INET6 else udp.UdpAsyncioTransport
        )
        domain = udp6.DOMAIN_NAME if family == socket.AF_INET6 else udp.DOMAIN_NAME
        # Open on our own bound socket: the port is known at once and no dispatcher is run.
        config.add_transport(self._engine, domain, transport_cls().open_server_mode(sock=sock))
        for i, community in enumerate(self.cfg.communities):
            config.add_v1_system(self._engine, f"community-{i}", community.get_secret_value())
        for user in self.cfg.v3_users:
            self._add_user(config, user, None)
            for sender in user.engine_ids:
                self._add_user(config, user, OctetString(hexValue=sender))
        self._receiver = ntfrcv.NotificationReceiver(self._engine, self._on_notification)
        # Every datagram goes through the dispatcher's receive_message; pyasn1 raises
        # TypeError on some garbage (e.g. any datagram starting with `{`) that would escape
        # into the event loop's handler, uncounted, with a traceback per packet.
        dispatcher = self._engine.message_dispatcher
        self._decode = dispatcher.receive_message
        dispatcher.receive_message = self.receive_datagram
        log.info("trap receiver listening", listen=f"{host}:{self.port}", rules=len(self.rules))

    def receive_datagram(self, engine: Any, domain: Any, address: Any, data: bytes) -> Any:
        """Decode and dispatch one datagram; garbage is counted and dropped, never raised."""
        try:
            return self._decode(engine, domain, address, data)
        except Exception as exc:  # noqa: BLE001 - a hostile datagram must not reach the loop
            self.malformed += 1
            kind = type(exc).__name__
            self.malformed_by_error[kind] = self.malformed_by_error.get(kind, 0) + 1
            if self.malformed % 1000 == 1:  # the 1st, 1001st…: a flood cannot flood the log
                log.warning(
                    "malformed SNMP datagram dropped",
                    source=str(address[0]) if address else "?",
                    error=type(exc).__name__,
                    malformed=self.malformed,
                )
            return b""

    def counters(self) -> dict[str, int]:
        """What was received and dropped, including pysnmp's own RFC 3418/3414 counters."""
        out = {"received": self.received, "malformed": self.malformed, "errors": self.errors}
        out.update({f"malformed {k}": n for k, n in sorted(self.malformed_by_error.items())})
        if self._engine is None:
            return out
        builder = self._engine.get_mib_builder()
        for mib, name in (
            ("__SNMPv2-MIB", "snmpInPkts"),
            ("__SNMPv2-MIB", "snmpInASNParseErrs"),
            ("__SNMPv2-MIB", "snmpInBadVersions"),
            ("__SNMPv2-MIB", "snmpInBadCommunityNames"),
            ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames"),
            ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests"),
            ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors"),
        ):
            try:
                (sym,) = builder.import_symbols(mib, name)
                out[name] = int(sym.syntax)
            except Exception:  # noqa: BLE001 - a counter pysnmp lacks is just not reported
                continue
        return out

    def _add_user(self, config: Any, user: TrapUser, engine_id: Any) -> None:
        auth_proto, priv_proto = user.protocols()
        config.add_v3_user(
            self._engine,
            user.user,
            auth_proto,
            user.auth_key.get_secret_value() if user.auth_key else None,
            priv_proto,
            user.priv_key.get_secret_value() if user.priv_key else None,
            securityEngineId=engine_id,
        )

    async def stop(self) -> None:
        """Stop receiving, cancel pending clear timers and close the socket."""
        for handle in self._clear_timers.values():
            handle.cancel()
        self._clear_timers.clear()
        if self._engine is not None:
            if self._receiver is not None:
                self._receiver.close(self._engine)
            self._engine.close_dispatcher()
        self._engine = self._receiver = None
        await asyncio.sleep(0)  # let the transport finish closing

    def _on_notification(
        self,
        snmp_engine: Any,
        state_reference: Any,
        context_engine_id: Any,
        context_name: Any,
        var_binds: Any,
        cb_ctx: Any,
    ) -> None:
        # pysnmp calls this from its datagram callback: nothing may escape from here.
        try:
            _, address = snmp_engine.message_dispatcher.get_transport_info(state_reference)
            self.handle(self._to_trap(str(address[0]), var_binds))
        except Exception:  # a bad trap must never stop the receiver
            self.errors += 1
            log.exception("trap handling failed")

    @staticmethod
    def _to_trap(source: str, var_binds: Any) -> trap_check.Trap:
        values: dict[str, str] = {}
        trap_oid = ""
        for name, val in var_binds:
            oid = str(name)
            if oid == SNMP_TRAP_OID:
                trap_oid = str(val)
            else:
                values[oid] = plain_value(val)[0]
        return trap_check.Trap(source=source, trap_oid=trap_oid, varbinds=values)

    def handle(self, trap: trap_check.Trap) -> None:
        """Apply every rule to one trap and submit the results (also used by tests)."""
        self.received += 1
        hits = 0
        for rule in self.rules:
            outcome = trap_check.match(rule, trap)
            if outcome is None:
                continue
            hits += 1
            try:
                if outcome == "fire":
                    self.submit(rule.name, trap_check.fired(rule, trap))
                    self._arm_clear(rule)
                else:
                    self._disarm(rule.name)
                    self.submit(rule.name, trap_check.cleared(trap))
            except Exception:  # one rule's trouble must not starve the others
                self.errors += 1
                log.exception("trap submit failed", check=rule.name, trap_oid=trap.trap_oid)
        if hits == 0:
            self.unknown += 1
            log.info(
                "unknown trap",
                source=trap.source,
                trap_oid=trap.trap_oid,
                varbinds=len(trap.varbinds),
            )

    def _arm_clear(self, rule: trap_check.Config) -> None:
        self._disarm(rule.name)
        if rule.clear_after is None:
            return
        loop = asyncio.get_running_loop()
        after = rule.clear_after
        self._clear_timers[rule.name] = loop.call_later(after, self._timed_clear, rule.name, after)

    def _disarm(self, name: str) -> None:
        handle = self._clear_timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _timed_clear(self, name: str, after: float) -> None:
        self._clear_timers.pop(name, None)
        try:
            self.submit(name, trap_check.cleared(None, after))
        except Exception:  # the loop's timer must not see our errors
            self.errors += 1
            log.exception("trap clear failed", check=name)
