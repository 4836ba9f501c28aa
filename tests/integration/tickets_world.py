"""Test support for ticket tests: a real aiosmtpd server, a config, incident rows, draining."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import aiosqlite
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from nocd.clock import FakeClock
from nocd.config import Config
from nocd.configload import load_text
from nocd.incidents.model import Incident, IncidentEvent, IncidentEventKind, load
from nocd.model import Severity
from nocd.outbox import OutboxWorker
from nocd.store import Store
from nocd.tickets.service import Tickets
from tests.fakes.jira_fake import JiraFake
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.peers import free_port

T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z, a Thursday (a holiday in many countries)


@dataclass
class MailServer:
    """aiosmtpd on 127.0.0.1 in the test's own loop; optional STARTTLS and AUTH."""

    tls: ssl.SSLContext | None = None
    credentials: tuple[str, str] | None = None
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse_next: list[str] = field(default_factory=list)  # SMTP replies to give to DATA
    port: int = 0
    _server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message (aiosmtpd handler hook)."""
        if self.refuse_next:
            return self.refuse_next.pop(0)
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(message_from_bytes(raw))
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"

    def _auth(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.credentials == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=True means "I replied already"

    def _protocol(self) -> SMTP:
        return SMTP(
            self,
            hostname="mx.example.com",
            tls_context=self.tls,
            require_starttls=self.tls is not None,
            authenticator=self._auth if self.credentials else None,
            auth_require_tls=self.tls is not None,
            auth_required=self.credentials is not None,
        )

    async def start(self, port: int = 0) -> int:
        """Listen; returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop open sessions."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def config_text(*, smtp_port: int, webhook_url: str, jira_url: str, extra: str = "") -> str:
    """A config with one site, customer, plan and PBX, and all three sinks."""
    return f"""
customers:
  acme:
    name: Acme Dental
    partner: Example Partner Ltd
    support_plan: platinum
support_plans:
  platinum:
    response: {{critical: 15m, degraded: 1h, low: 4h}}
    resolve: {{critical: 4h, degraded: 1d, low: 3d}}
sites:
  main-street:
    name: Main Street Office
    customer: acme
    timezone: Europe/Paris
    country: FR
    devices:
      pbx1: {{serial: SN-0001, model: PBX-200, firmware: "5.4.1", country: FR}}
checks:
  - name: main-street-pbx
    type: tcp
    target: pbx.main-street.example.com:5060
    site: main-street
    device: pbx1
tickets:
  sinks:
    mail:
      type: email
      host: 127.0.0.1
      port: {smtp_port}
      security: none
      from_address: noc@example.com
      to: [helpdesk@example.com]
      timeout: 5s
    hook:
      type: webhook
      url: {webhook_url}
      secret: ${{NOCD_TEST_HOOK_KEY}}
      timeout: 5s
    jira:
      type: jira
      base_url: {jira_url}
      email: noc@example.com
      api_token: ${{NOCD_TEST_JIRA_TOKEN}}
      project: NOC
      timeout: 5s
{extra}"""


def make_config(**kw: Any) -> Config:
    """Validate `config_text(**kw)`."""
    return load_text(config_text(**kw))


async def insert_incident(
    conn: aiosqlite.Connection,
    *,
    code: str = "K7Q",
    severity: Severity = Severity.CRITICAL,
    opened_at: float = T0,
    site: str = "main-street",
    check: str = "main-street-pbx",
    reason: str = "no SYN-ACK from 203.0.113.10:5060 within 5s",
) -> Incident:
    """Insert an incident and one member the way 0002_incidents.sql stores them."""
    cur = await conn.execute(
        "INSERT INTO incidents (code, group_key, site, customer, severity, state, title, "
        "opened_at) VALUES (?, ?, ?, 'acme', ?, 'triggered', ?, ?)",
        (code, f"site:{site}", site, severity.value, "PBX unreachable at Main Street", opened_at),
    )
    inc_id = int(cur.lastrowid or 0)
    await conn.execute(
        "INSERT INTO incident_members (incident_id, check_name, severity, failure, reason, since) "
        "VALUES (?, ?, ?, 'timeout', ?, ?)",
        (inc_id, check, severity.value, reason, opened_at - 90),
    )
    incident = await load(conn, inc_id)
    assert incident is not None
    return incident


async def set_incident(conn: aiosqlite.Connection, inc_id: int, **cols: Any) -> Incident:
    """Update incident columns and reload it."""
    sets = ", ".join(f"{k}=?" for k in cols)
    await conn.execute(f"UPDATE incidents SET {sets} WHERE id=?", (*cols.values(), inc_id))
    incident = await load(conn, inc_id)
    assert incident is not None
    return incident


async def drain(
    worker: OutboxWorker, clock: FakeClock, rounds: int = 40, step: float = 1.0
) -> None:
    """Run the worker until nothing is pending (moving the fake clock past backoffs)."""
    for _ in range(rounds):
        await worker.run_once()
        if await worker.pending() == 0:
            return
        clock.advance(step)
    raise AssertionError(f"outbox not drained: {await worker.pending()} pending")


def write_secret_env(monkeypatch: Any, tmp: Path) -> None:
    """Secrets the config references, from the environment as in production."""
    monkeypatch.setenv("NOCD_TEST_HOOK_KEY", "hook-key-5f0c")
    monkeypatch.setenv("NOCD_TEST_JIRA_TOKEN", "jira-token-91ab")


class World:
    """The peers, the store file and the service/worker built on them."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "nocd.db"
        self.mail = MailServer()
        self.hook = WebhookReceiver(b"hook-key-5f0c")
        self.jira = JiraFake("noc@example.com", "jira-token-91ab")
        self.clock = FakeClock(T0)
        self.config: Config
        self.store: Store
        self.tickets: Tickets
        self.worker: OutboxWorker

    async def start(self, mail_up: bool = True) -> None:
        """Start the peers (the mail server may start later, on the configured port)."""
        port = await self.mail.start() if mail_up else free_port()
        self.smtp_port = port
        url = await self.hook.start()
        jira = await self.jira.start()
        self.config = make_config(smtp_port=port, webhook_url=url, jira_url=jira)
        await self.boot()

    async def boot(self) -> None:
        """(Re)open the store and rebuild the service and worker, as a restart does."""
        self.store = await Store.open(self.path)
        self.tickets = Tickets(self.config, self.store, self.clock)
        self.worker = OutboxWorker(self.store, self.clock)
        for kind, handler in self.tickets.handlers().items():
            self.worker.register(kind, handler)
        await self.worker.recover()

    async def event(self, kind: IncidentEventKind, inc_id: int, **cols: Any) -> None:
        """Change the incident row and tell the service, in one transaction."""
        previous = cols.pop("previous", None)
        async with self.store.transaction() as conn:
            incident = await set_incident(conn, inc_id, **cols) if cols else None
            if incident is None:
                incident = await load(conn, inc_id)
            assert incident is not None
            ev = IncidentEvent(kind, self.clock.now(), by="alice", via="api", previous=previous)
            await self.tickets.on_incident(conn, incident, ev)

    async def stop(self) -> None:
        await self.store.close()
        await self.mail.stop()
        await self.hook.stop()
        await self.jira.stop()
