"""Tickets config: the example loads; sinks validate through the one registry, strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from nocd.configload import ConfigError, load_text
from nocd.tickets import jira, mail, registry, webhook

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tickets.example.yaml"


def test_example_loads_with_every_sink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOCD_SMTP_PASSWORD", "smtp-pass-77")
    monkeypatch.setenv("NOCD_JIRA_TOKEN", "jira-token-91ab")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "nocd-webhook-key").write_text("hook-key-5f0c\n")
    cfg = load_text(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    sinks = cfg.tickets.sinks
    assert isinstance(sinks["helpdesk-mail"], mail.Config)
    assert isinstance(sinks["automation"], webhook.Config)
    assert isinstance(sinks["jira"], jira.Config)
    assert sinks["automation"].secret.get_secret_value() == "hook-key-5f0c"
    assert "hook-key-5f0c" not in repr(cfg) and "jira-token-91ab" not in repr(cfg)
    assert cfg.tickets.rfo_due == {"P1": 86400.0, "P2": 345600.0}
    assert cfg.support_plans["bronze"].response.low == "next_business_day"
    assert set(registry.sink_types()) == {"webhook", "email", "jira"}


@pytest.mark.parametrize(
    ("yaml", "error"),
    [
        ("tickets: {sinks: {x: {type: fax}}}",
         "<config>:1: tickets.sinks.x: unknown sink type 'fax'; known types: webhook, email, jira"),
        ("tickets: {sinks: {x: {url: 'http://a'}}}",
         "<config>:1: tickets.sinks.x: a sink needs a type: one of webhook, email, jira"),
        ("tickets: {sinks: {Bad Name: {type: webhook, url: 'http://a', secret: '${K}'}}}",
         "<config>:1: tickets.sinks: sink name 'Bad Name': use 1-32 lowercase letters, digits, "
         "'_' or '-'"),
        ("tickets: {sinks: {x: {type: webhook, url: 'http://a', secret: '${K}', retries: 3}}}",
         "<config>:1: tickets.sinks.x.retries: unknown key"),
        ("tickets: {sinks: {x: {type: webhook, url: 'http://a', secret: 'clear'}}}",
         "<config>:1: tickets.sinks.x.secret: secrets may not be written in clear in the config: "
         "use '${ENV_VAR}' or 'file:/path'"),
        ("tickets: {sinks: {x: {type: webhook, url: 'http://a', secret: '${K}', timeout: 0s}}}",
         "<config>:1: tickets.sinks.x.timeout: Input should be greater than 0"),
        ("tickets: {sinks: {j: {type: jira, base_url: 'https://j.example.com', email: a@b.c, "
         "api_token: '${K}', project: noc}}}",
         "<config>:1: tickets.sinks.j.project: String should match pattern '^[A-Z][A-Z0-9_]{1,9}$'"),
        ("tickets: {sinks: {j: {type: jira, base_url: 'https://j.example.com', email: a@b.c, "
         "api_token: '${K}', project: NOC, labels: ['a b']}}}",
         "<config>:1: tickets.sinks.j.labels: Jira labels cannot be empty or contain spaces"),
        ("tickets: {sinks: {j: {type: jira, base_url: 'https://j.example.com', email: a@b.c, "
         "api_token: '${K}', project: NOC, priorities: {P0: Blocker}}}}",
         "<config>:1: tickets.sinks.j.priorities: priorities maps P1, P2, P3, P4 to Jira priority "
         "names"),
        ("tickets: {rfo_due: {P5: 1h}}",
         "<config>:1: tickets.rfo_due.P5.[key]: Input should be 'P1', 'P2', 'P3' or 'P4'"),
    ],
)  # fmt: skip
def test_invalid_tickets_config(yaml: str, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", "x")
    with pytest.raises(ConfigError) as err:
        load_text(yaml)
    assert str(err.value) == error
