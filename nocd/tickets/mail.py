"""The `email` ticket sink: SMTP mail in the form help desks turn into tickets, threaded.

The first mail's Message-ID is derived from the incident, so every update can name it in
In-Reply-To/References and the help desk files it on the same ticket; a resent mail keeps
its Message-ID, so a help desk that drops repeats drops it.
"""

from __future__ import annotations

import re
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import Field, model_validator

from nocd.clock import iso, utc
from nocd.delivery import DeliveryError
from nocd.secrets import Secret
from nocd.tickets.sink import AUTH_RETRY, SinkConfig, TicketOp, fact_label

_ADDRESS = re.compile(r"^[^@\s<>]+@[A-Za-z0-9.-]+$")
_SUBJECT_TAG = {"create": "", "update": "Re: ", "resolve": "Re: ", "close": "Re: "}
_X_PRIORITY = {"P1": "1", "P2": "2", "P3": "3", "P4": "4"}


class Config(SinkConfig):
    """An SMTP relay and the help desk's intake address."""

    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with")
    username: str | None = None
    password: Secret | None = None
    from_address: str
    to: tuple[str, ...] = Field(min_length=1)
    cc: tuple[str, ...] = ()
    subject_prefix: str = "[nocd]"
    message_id_domain: str | None = Field(None, description="default: the from_address domain")

    @model_validator(mode="after")
    def _check(self) -> Config:
        for addr in (self.from_address, *self.to, *self.cc):
            if not _ADDRESS.match(addr):
                raise ValueError(f"not an email address: {addr!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password for SMTP AUTH, or neither")
        return self

    @property
    def domain(self) -> str:
        """The right-hand side of generated Message-IDs."""
        return self.message_id_domain or self.from_address.rsplit("@", 1)[1]


def thread_id(fingerprint: str, domain: str) -> str:
    """The Message-ID of a ticket's first mail, which every update refers to."""
    return f"<{fingerprint}.nocd@{domain}>"


def message(cfg: Config, op: TicketOp) -> EmailMessage:
    """The mail for `op`: stable subject, facts as `Key: value` lines, thread headers."""
    t = op.ticket
    root = thread_id(t.fingerprint, cfg.domain)
    msg = EmailMessage()
    msg["From"] = cfg.from_address
    msg["To"] = ", ".join(cfg.to)
    if cfg.cc:
        msg["Cc"] = ", ".join(cfg.cc)
    subject = f"{cfg.subject_prefix} [{t.priority}] {t.title} (incident {t.incident_code})"
    msg["Subject"] = _SUBJECT_TAG[op.action] + subject.strip()
    msg["Date"] = format_datetime(utc(op.at))
    if op.action == "create":
        msg["Message-ID"] = root
    else:
        msg["Message-ID"] = f"<{t.fingerprint}.{op.seq}.nocd@{cfg.domain}>"
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["X-Priority"] = _X_PRIORITY.get(t.priority, "3")
    msg["X-Nocd-Incident"] = t.incident_code
    msg["X-Nocd-Fingerprint"] = t.fingerprint
    msg["X-Nocd-Action"] = op.action
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: help desks must not auto-reply
    msg.set_content(_text(op))
    return msg


def _text(op: TicketOp) -> str:
    t = op.ticket
    lines = [op.comment, "", f"Priority: {t.priority}", f"Status: {t.status}"]
    lines.append(f"Incident: {t.incident_code}")
    lines.append(f"Opened: {iso(t.opened_at)}")
    if t.response_due:
        lines.append(f"Response due: {iso(t.response_due)}")
    if t.resolve_due:
        lines.append(f"Resolve due: {iso(t.resolve_due)}")
    lines += [f"{fact_label(k)}: {v}" for k, v in t.facts.items()]
    return "\n".join([*lines, "", t.description, ""])


class EmailSink:
    """Sends ticket mails through one SMTP relay."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self._cfg.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self._cfg.ca_file))
        return ctx

    async def send(self, op: TicketOp) -> str:
        """Send the mail for `op`; the provider id is the thread's root Message-ID."""
        cfg = self._cfg
        what = f"SMTP {cfg.host}:{cfg.port}"
        try:
            await aiosmtplib.send(
                message(cfg, op),
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password.get_secret_value() if cfg.password else None,
                use_tls=cfg.security == "tls",
                start_tls=True if cfg.security == "starttls" else False,
                tls_context=self._tls() if cfg.security != "none" else None,
                timeout=cfg.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            reason = f"{what}: authentication failed ({exc.code})"
            raise DeliveryError(reason, True, AUTH_RETRY) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            final = all(c >= 500 for c in codes)
            raise DeliveryError(f"{what}: recipients refused {codes}", not final) from None
        except aiosmtplib.SMTPResponseException as exc:
            # RFC 5321: 4yz replies are transient, 5yz permanent.
            raise DeliveryError(f"{what}: {exc.code} {exc.message[:200]}", exc.code < 500) from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"{what}: TLS error {exc.reason}", True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{what}: {type(exc).__name__}: {_short(exc)}", True) from None
        return thread_id(op.ticket.fingerprint, cfg.domain)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""


def build(cfg: Config) -> EmailSink:
    """The sink for `cfg` (registry entry point)."""
    return EmailSink(cfg)
