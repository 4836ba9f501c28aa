"""The email sink against a real aiosmtpd server: STARTTLS + AUTH, threading, SMTP errors."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nocd.delivery import DeliveryError
from nocd.tickets import mail
from nocd.tickets.sink import AUTH_RETRY, TicketOp, TicketView
from tests.integration.tickets_world import MailServer

T0 = 1_767_261_600.0
VIEW = TicketView(
    7,
    42,
    "K7Q",
    "nocd-42-1767261600",
    "PBX unreachable at Main Street",
    "evidence: no SYN-ACK",
    "P1",
    "open",
    T0,
    T0 + 900,
    None,
    "main-street",
    "acme",
    {"site": "main-street", "serial": "SN-0001", "pbx_country": "FR"},
)


def op(action: str = "create", seq: int = 1, comment: str = "Ticket opened.") -> TicketOp:
    return TicketOp(action, seq, f"ticket:42:mail:{seq}", T0 + seq, comment, VIEW)  # type: ignore[arg-type]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), as a CA file the sink can trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "mx.pem", tmp / "mx.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[MailServer, Path]]:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = MailServer(tls=ctx, credentials=("noc@example.com", "smtp-pass-77"))
    await server.start()
    yield server, cert
    await server.stop()


def sink_config(port: int, **kw: object) -> mail.Config:
    base: dict[str, object] = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "noc@example.com",
        "to": ["helpdesk@example.com"],
        "cc": ["partner@example.com"],
        "timeout": "5s",
    }
    return mail.Config.model_validate({**base, **kw})


async def test_starttls_auth_and_threading(
    tls_server: tuple[MailServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_server
    monkeypatch.setenv("NOCD_TEST_SMTP_PASS", "smtp-pass-77")
    cfg = sink_config(
        server.port,
        security="starttls",
        ca_file=str(cert),
        username="noc@example.com",
        password="${NOCD_TEST_SMTP_PASS}",
    )
    sink = mail.build(cfg)
    root = await sink.send(op())
    assert root == "<nocd-42-1767261600.nocd@example.com>"
    again = await sink.send(op("update", 2, "Acknowledged by alice.").delivering(root, False))
    assert again == root
    first, second = server.messages
    assert first["Message-ID"] == root and first["In-Reply-To"] is None
    assert second["In-Reply-To"] == root and second["References"] == root
    assert second["Message-ID"] == "<nocd-42-1767261600.2.nocd@example.com>"
    assert first["Subject"] == "[nocd] [P1] PBX unreachable at Main Street (incident K7Q)"
    assert second["Subject"] == "Re: " + first["Subject"]
    assert first["X-Priority"] == "1" and first["Auto-Submitted"] == "auto-generated"
    body = first.get_payload()
    assert isinstance(body, str)
    assert "Serial: SN-0001" in body and "PBX country: FR" in body
    assert "Response due: 2026-01-01T10:15:00Z" in body
    assert server.envelopes[0] == (
        "noc@example.com",
        ["helpdesk@example.com", "partner@example.com"],
    )


async def test_wrong_password_retries_slowly_without_leaking(
    tls_server: tuple[MailServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_server
    monkeypatch.setenv("NOCD_TEST_SMTP_PASS", "wrong-pass-13")
    cfg = sink_config(
        server.port,
        security="starttls",
        ca_file=str(cert),
        username="noc@example.com",
        password="${NOCD_TEST_SMTP_PASS}",
    )
    with pytest.raises(DeliveryError) as err:
        await mail.build(cfg).send(op())
    assert err.value.retryable and err.value.retry_after == AUTH_RETRY
    assert "authentication failed (535)" in err.value.reason
    assert "wrong-pass-13" not in err.value.reason and "wrong-pass-13" not in repr(cfg)


async def test_untrusted_certificate_is_a_retryable_tls_error(
    tls_server: tuple[MailServer, Path],
) -> None:
    server, _ = tls_server
    with pytest.raises(DeliveryError) as err:
        await mail.build(sink_config(server.port, security="starttls")).send(op())
    assert err.value.retryable and "CERTIFICATE_VERIFY_FAILED" in err.value.reason


async def test_smtp_replies_are_classified() -> None:
    server = MailServer(refuse_next=["451 4.3.0 try again later", "554 5.7.1 rejected"])
    await server.start()
    try:
        sink = mail.build(sink_config(server.port))
        with pytest.raises(DeliveryError) as err:
            await sink.send(op())
        assert err.value.retryable and "451" in err.value.reason
        with pytest.raises(DeliveryError) as err:
            await sink.send(op())
        assert not err.value.retryable and "554" in err.value.reason
        await sink.send(op())
        assert len(server.messages) == 1
    finally:
        await server.stop()
    with pytest.raises(DeliveryError) as err:  # nobody listening any more
        await sink.send(op())
    assert err.value.retryable


def test_config_rules() -> None:
    with pytest.raises(ValueError, match="both username and password"):
        sink_config(25, username="noc@example.com")
    with pytest.raises(ValueError, match="not an email address"):
        sink_config(25, to=["helpdesk"])
    with pytest.raises(ValueError, match="at least 1"):
        sink_config(25, to=[])
    assert sink_config(25, message_id_domain="noc.example.com").domain == "noc.example.com"
