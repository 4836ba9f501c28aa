"""SMS reply and keypress parsing, page texts, TwiML, and the example paging config."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from nocd.configload import load_text
from nocd.incidents.model import Incident, IncidentState
from nocd.model import Severity
from paging import twiml
from paging.acks import digit_action, parse_reply
from paging.config import PagingConfig
from paging.messages import SMS_LIMIT, digest_text, sms_text, spell, voice_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("4 K7Q", ("ack", "K7Q")),
        ("ACK K7Q", ("ack", "K7Q")),
        ("ack k7q", ("ack", "K7Q")),
        ("Acknowledge K7Q", ("ack", "K7Q")),
        ("  4   k7q  ", ("ack", "K7Q")),
        ("4: K7Q", ("ack", "K7Q")),
        ("RESOLVE K7Q", ("resolve", "K7Q")),
        ("resolve k7q", ("resolve", "K7Q")),
        ("6 K7Q", ("resolve", "K7Q")),
        ("4", ("ack", None)),  # no code: the only open incident paged to the sender
        ("ok", ("ack", None)),
        ("hello", None),
        ("5 K7Q", None),
        ("4 K7Q please", None),  # not a command: ask again rather than guess
        ("", None),
    ],
)
def test_parse_reply(body: str, expected: tuple[str, str | None] | None) -> None:
    assert parse_reply(body) == expected


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("4", "ack"), ("6", "resolve"), ("9", "repeat"), ("1", None), ("", None), ("4#", "ack")],
)
def test_digit_action(digits: str, expected: str | None) -> None:
    assert digit_action(digits) == expected


def incident(i: int, severity: Severity = Severity.CRITICAL, title: str = "PBX down") -> Incident:
    return Incident(
        i,
        f"K{i}Q",
        f"site:s{i}",
        f"s{i}",
        None,
        severity,
        IncidentState.TRIGGERED,
        title,
        None,
        0.0,
        None,
        None,
        None,
        None,
        None,
    )


def test_texts() -> None:
    one = incident(7, title="PBX down at site Main Street")
    assert voice_text([one]) == "Critical: PBX down at site Main Street. Incident K 7 Q."
    assert sms_text([one]) == (
        "nocd P1 CRITICAL K7Q: PBX down at site Main Street. Reply 4 K7Q to ack, 6 K7Q to resolve."
    )
    many = [incident(i) for i in range(1, 4)]
    assert "3 incidents need attention" in voice_text(many)
    bundle = sms_text(many)
    assert all(f"K{i}Q" in bundle for i in range(1, 4))
    huge = sms_text([incident(i, title="x" * 80) for i in range(50)])
    assert len(huge) == SMS_LIMIT and huge.endswith("…")
    assert "K1Q: PBX down" in digest_text([incident(1, Severity.DEGRADED)], "2026-01-12T14:00Z")
    assert spell("K7Q") == "K 7 Q"


def test_twiml_documents() -> None:
    doc = twiml.alert("Critical: PBX down.", "https://noc.example.com/twilio/gather/k", 2)
    assert '<Gather action="https://noc.example.com/twilio/gather/k" method="POST" ' in doc
    assert 'numDigits="1"' in doc and "Press 4 to acknowledge, 6 to resolve, 9 to repeat." in doc
    assert "<Message>done &amp; dusted</Message>" in twiml.sms_reply("done & dusted")
    assert "<Redirect" in twiml.redirect("https://noc.example.com/twilio/voice/k")


def test_example_config_validates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("NOCD_SMTP_PASSWORD", "smtp-password")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "twilio-auth-token").write_text("token-from-a-credential\n")
    doc = YAML(typ="safe").load((ROOT / "config" / "paging.example.yaml").read_text())
    cfg = PagingConfig.model_validate(doc["paging"])
    assert cfg.provider.type == "twilio"
    assert cfg.provider.auth_token.get_secret_value() == "token-from-a-credential"
    assert "token-from" not in repr(cfg)


def test_paging_section_through_the_config_loader() -> None:
    text = """
support_hours:
  office:
    timezone: Europe/Paris
    weekly: {mon: ["09:00-18:00"]}
paging:
  people:
    alice: {name: Alice Example, phone: "+15550101"}
  escalation_policies:
    noc: {steps: [{people: [alice], wait: 5m}]}
  routing:
    default: {support_hours: office, escalation_policy: noc}
"""
    cfg = load_text(text)
    assert cfg.paging.escalation_policies["noc"].steps[0].wait == 300.0
    assert cfg.paging.provider.type == "dry_run"
