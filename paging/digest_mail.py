"""Digest by email: the morning digest mailed to the support queue through an SMTP relay."""

from __future__ import annotations

import re
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import Field, model_validator

from nocd.clock import utc
from nocd.delivery import DeliveryError
from nocd.duration import Duration
from nocd.inventory import Strict
from nocd.secrets import Secret

_ADDRESS = re.compile(r"^[^@\s<>]+@[A-Za-z0-9.-]+$")


class DigestEmail(Strict):
    """Where digests are mailed (in addition to SMS to the route's `digest_to` people)."""

    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: Path | None = None
    username: str | None = None
    password: Secret | None = None
    from_address: str
    to: tuple[str, ...] = Field(min_length=1)
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _check(self) -> DigestEmail:
        for addr in (self.from_address, *self.to):
            if not _ADDRESS.match(addr):
                raise ValueError(f"not an email address: {addr!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password for SMTP AUTH, or neither")
        return self


def digest_message(cfg: DigestEmail, key: str, subject: str, text: str, at: float) -> EmailMessage:
    """The digest mail; its Message-ID derives from the outbox key, so a resend keeps it."""
    msg = EmailMessage()
    msg["From"] = cfg.from_address
    msg["To"] = ", ".join(cfg.to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utc(at))
    msg["Message-ID"] = f"<{key}@{cfg.from_address.rsplit('@', 1)[1]}>"
    msg.set_content(text)
    return msg


async def send_digest_email(cfg: DigestEmail, msg: EmailMessage) -> str:
    """Send through the relay; returns the Message-ID; raises DeliveryError."""
    what = f"SMTP {cfg.host}:{cfg.port}"
    tls = None
    if cfg.security != "none":
        tls = ssl.create_default_context()
        if cfg.ca_file is not None:
            tls.load_verify_locations(cafile=str(cfg.ca_file))
    try:
        await aiosmtplib.send(
            msg,
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            tls_context=tls,
            timeout=cfg.timeout,
        )
    except aiosmtplib.SMTPResponseException as exc:
        # RFC 5321: 4yz replies are transient, 5yz permanent.
        raise DeliveryError(f"{what}: {exc.code} {exc.message[:200]}", exc.code < 500) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}", True) from None
    return str(msg["Message-ID"])
