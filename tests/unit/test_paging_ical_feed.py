"""iCal feeds fetched from a local HTTP server: refresh, failures keep the last good copy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from paging.config import PagingConfig
from paging.ical_feed import IcalFeeds
from paging.schedules import on_call
from tests.unit.test_paging_schedules import ICAL

T = datetime(2026, 1, 13, 16, 0, tzinfo=UTC)  # inside the feed's one-off shift for erin


class Feed:
    def __init__(self) -> None:
        self.status, self.body, self.hits = 200, ICAL, 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(status=self.status, text=self.body, content_type="text/calendar")


@pytest.fixture
async def feed() -> AsyncIterator[tuple[Feed, str]]:
    f = Feed()
    app = web.Application()
    app.router.add_get("/oncall.ics", f.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f, str(server.make_url("/oncall.ics"))
    await server.close()


def config(**sched: Any) -> PagingConfig:
    return PagingConfig.model_validate(
        {
            "people": {
                "bob": {"name": "Bob Example", "phone": "+15550102"},
                "erin": {"name": "Erin Example", "phone": "+15550105"},
            },
            "schedules": {"primary": {"timezone": "UTC", **sched}},
        }
    )


async def test_feed_refresh_and_last_good_copy(feed: tuple[Feed, str]) -> None:
    f, url = feed
    cfg = config(ical_url=url, ical_refresh="5m")
    feeds = IcalFeeds()
    try:
        assert await feeds.refresh(cfg, 0.0) == []
        assert on_call(cfg.schedules["primary"], T, feeds.shifts["primary"]) == "erin"
        assert await feeds.refresh(cfg, 100.0) == [] and f.hits == 1  # not due yet
        f.status = 503
        [err] = await feeds.refresh(cfg, 300.0)
        assert "HTTP 503" in err and f.hits == 2
        assert on_call(cfg.schedules["primary"], T, feeds.shifts["primary"]) == "erin"
        f.status, f.body = 200, "<html>login page</html>"
        [err] = await feeds.refresh(cfg, 600.0)
        assert "not an iCalendar document" in err
        f.body = ICAL.replace("SUMMARY:erin", "SUMMARY:Bob Example")
        assert await feeds.refresh(cfg, 900.0) == []
        assert on_call(cfg.schedules["primary"], T, feeds.shifts["primary"]) == "bob"
        assert await feeds.refresh(config(), 1200.0) == [] and feeds.shifts == {}
    finally:
        await feeds.close()


async def test_file_and_unreachable_feed(tmp_path: Path) -> None:
    path = tmp_path / "oncall.ics"
    path.write_text(ICAL)
    feeds = IcalFeeds()
    try:
        assert await feeds.refresh(config(ical_file=str(path)), 0.0) == []
        assert "primary" in feeds.shifts
        [err] = await feeds.refresh(config(ical_url="http://127.0.0.1:9/x.ics"), 0.0, force=True)
        assert "cannot fetch" in err
    finally:
        await feeds.close()


def test_one_source_only() -> None:
    with pytest.raises(ValueError, match="not both"):
        config(ical_file="/tmp/x.ics", ical_url="https://oncall.example.com/x.ics")
    with pytest.raises(ValueError, match="http"):
        config(ical_url="ftp://oncall.example.com/x.ics")
