"""`paging.provider.api_base_url`: validated, and used by the Twilio notifier when set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from paging.config import TwilioProvider
from paging.notifiers import build_notifier
from paging.twilio_notifier import TwilioNotifier

SID = "AC" + "0" * 31 + "1"


def provider(**extra: object) -> TwilioProvider:
    return TwilioProvider.model_validate(
        {"type": "twilio", "account_sid": "${TB_SID}", "auth_token": "${TB_TOKEN}"}
        | {"from_number": "+15550100"}
        | extra
    )


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_SID", SID)
    monkeypatch.setenv("TB_TOKEN", "tb-token")


def test_default_is_twilio_itself() -> None:
    n = build_notifier(provider())
    assert isinstance(n, TwilioNotifier) and n._base_url is None


def test_configured_base_url_is_used_and_normalised() -> None:
    n = build_notifier(provider(api_base_url="http://127.0.0.1:8089/"))
    assert isinstance(n, TwilioNotifier) and n._base_url == "http://127.0.0.1:8089"


def test_an_explicit_argument_wins_over_the_config() -> None:
    n = build_notifier(provider(api_base_url="https://edge.example.com"), "http://127.0.0.1:1")
    assert isinstance(n, TwilioNotifier) and n._base_url == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    "bad", ["ftp://api.example.com", "api.twilio.com", "https://x.example.com/2010-04-01", ""]
)
def test_bad_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="api_base_url must be an http"):
        provider(api_base_url=bad)
