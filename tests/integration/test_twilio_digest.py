"""The morning digest by SMS (Twilio fake) and by email (aiosmtpd), sent once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from nocd.clock import FakeClock
from nocd.model import Severity
from tests.fakes.paging_harness import PUBLIC_URL, Harness
from tests.fakes.twilio_fake import FakeTwilio
from tests.integration.test_twilio_paging import BOB, CALS, NY, SAT_2AM, SID, TOKEN, paging_config
from tests.integration.tickets_world import MailServer


@pytest.fixture(autouse=True)
def _creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_TEST_TWILIO_SID", SID)
    monkeypatch.setenv("NOCD_TEST_TWILIO_TOKEN", TOKEN)


@pytest.fixture
async def smtp() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    yield server
    await server.stop()


async def test_digest_by_sms_and_email(tmp_path: Path, smtp: MailServer) -> None:
    clock = FakeClock(SAT_2AM.timestamp())
    async with FakeTwilio(SID, TOKEN, now=clock.now, public_url=PUBLIC_URL) as fake:
        email = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "none",
            "from_address": "nocd@example.com",
            "to": ["support@example.com"],
        }
        h = await Harness(tmp_path, paging_config(digest_email=email), CALS, clock, fake).start()
        try:
            a = await h.open_incident(Severity.DEGRADED, title="Voicemail broken at North")
            b = await h.open_incident(Severity.DEGRADED, site="south", title="Phones down South")
            smtp.refuse_next.append("451 try again later")  # the first try is deferred
            clock.set(datetime(2026, 1, 12, 9, 0, tzinfo=NY))
            await h.tick(600, step=5)
            assert (
                len(fake.messages) == 1 and next(iter(fake.messages.values())).params["To"] == BOB
            )
            [mail] = smtp.messages
            assert mail["To"] == "support@example.com"
            assert "2 degraded incident(s)" in str(mail["Subject"])
            body = mail.get_payload()
            assert a.code in str(body) and b.code in str(body)
            assert str(mail["Message-ID"]).startswith("<digest.email.")
            texts = [e.text for e in await h.timeline(a)]
            assert any("digest email to support@example.com sent" in t for t in texts)
        finally:
            await h.close()


def test_digest_email_config_errors() -> None:
    with pytest.raises(ValueError, match="not an email address"):
        paging_config(
            digest_email={
                "host": "smtp.example.com",
                "from_address": "nocd",
                "to": ["support@example.com"],
            }
        )
