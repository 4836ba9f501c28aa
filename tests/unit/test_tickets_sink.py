"""Shared sink helpers: HTTP error classes, Retry-After parsing, URLs safe for error messages."""

from __future__ import annotations

import pytest

from nocd.tickets.sink import AUTH_RETRY, fact_label, http_error, retry_after, safe_url


@pytest.mark.parametrize(
    ("status", "retryable", "wait"),
    [
        (500, True, None),  # server errors are outages
        (502, True, None),
        (408, True, None),  # request timeout
        (425, True, None),  # too early
        (429, True, None),  # rate limit (the caller passes Retry-After when given)
        (401, True, AUTH_RETRY),  # a fixed credential (reload) must not have lost the op
        (403, True, AUTH_RETRY),
        (400, False, None),  # the request itself is wrong: retrying repeats the failure
        (404, False, None),
        (422, False, None),
    ],
)
def test_http_error_classes(status: int, retryable: bool, wait: float | None) -> None:
    err = http_error(status, "POST https://hd.example.com/x")
    assert (err.retryable, err.retry_after) == (retryable, wait)
    assert err.reason.startswith(f"POST https://hd.example.com/x: HTTP {status}")


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        (None, None, None),
        ("", None, None),
        ("7", None, 7.0),
        ("86400", None, 3600.0),  # capped: a ticket must not wait a day on one header
        ("Thu, 01 Jan 2026 10:00:30 GMT", "Thu, 01 Jan 2026 10:00:00 GMT", 30.0),
        ("Thu, 01 Jan 2026 09:00:00 GMT", "Thu, 01 Jan 2026 10:00:00 GMT", 0.0),  # past
        ("Thu, 01 Jan 2026 10:00:30 GMT", None, None),  # no server clock: use backoff
        ("soon", None, None),
        ("-5", None, None),
    ],
)
def test_retry_after(value: str | None, date: str | None, seconds: float | None) -> None:
    assert retry_after(value, date) == seconds


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://u:p@hd.example.com/a/b?token=t#f", "https://hd.example.com/a/b"),
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
        ("not a url", "<url>"),
    ],
)
def test_safe_url(url: str, safe: str) -> None:
    assert safe_url(url) == safe


def test_fact_labels() -> None:
    assert [fact_label(k) for k in ("pbx", "pbx_country", "serial", "support_plan")] == [
        "PBX", "PBX country", "Serial", "Support plan"
    ]  # fmt: skip
