"""The pager with the dry-run notifier: decisions on the timeline, DRY-RUN pages, edge cases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from nocd.calendar_config import CalendarConfig
from nocd.clock import FakeClock
from nocd.incidents.model import IncidentEvent, IncidentEventKind, load
from nocd.model import Severity
from paging.config import PagingConfig
from paging.escalation import page_key
from paging.notifiers import DryRunNotifier
from paging.oncall import describe
from tests.fakes.paging_harness import Harness

NY = ZoneInfo("America/New_York")
SAT_2AM = datetime(2026, 1, 10, 2, 0, tzinfo=NY)
CALS = {
    "office": CalendarConfig.model_validate(
        {
            "timezone": "America/New_York",
            "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        }
    )
}


def config(**over: Any) -> PagingConfig:
    raw: dict[str, Any] = {
        "people": {
            "alice": {"name": "Alice Example", "phone": "+15550101"},
            "bob": {"name": "Bob Example", "phone": "+15550102"},
        },
        "schedules": {
            "primary": {
                "timezone": "America/New_York",
                "layers": [
                    {
                        "rotation": "daily",
                        "start": "2026-01-05",
                        "handoff": "09:00",
                        "participants": ["alice", "bob"],
                    }
                ],
            },
            "empty": {"timezone": "UTC"},
        },
        "escalation_policies": {
            "noc": {
                "steps": [
                    {"schedules": ["primary"], "channels": ["voice"], "wait": "5m"},
                    {"people": ["bob"], "channels": ["sms"], "wait": "5m"},
                ]
            },
            "hollow": {
                "steps": [
                    {"schedules": ["empty"], "wait": "5m"},
                    {"people": ["bob"], "channels": ["sms"], "wait": "5m"},
                ]
            },
        },
        "routing": {"default": {"support_hours": "office", "escalation_policy": "noc"}},
    }
    raw.update(over)
    return PagingConfig.model_validate(raw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(SAT_2AM.timestamp())


@pytest.fixture
async def h(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    harness = await Harness(tmp_path, config(), CALS, clock, None).start()
    yield harness
    await harness.close()


async def test_dry_run_pages_are_recorded_and_clearly_marked(h: Harness) -> None:
    inc = await h.open_incident()
    await h.tick()
    assert isinstance(h.notifier, DryRunNotifier)
    [sent] = h.notifier.sent
    assert (sent.channel, sent.to) == ("voice", "+15550101")  # Friday 09:00's shift: alice
    texts = [e.text for e in await h.timeline(inc)]
    assert any(t.startswith("DRY-RUN (not sent): call to alice (+15550101)") for t in texts)
    async with h.store.reader.execute(
        "SELECT state, provider_id FROM outbox WHERE kind='notify'"
    ) as cur:
        rows = [tuple(r) for r in await cur.fetchall()]
    assert rows == [("done", f"DRYRUN-page.{inc.id}.0.0.alice.voice")]


async def test_webhooks_refuse_everything_without_twilio(h: Harness) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{h.webhook_base}/twilio/sms", data={"Body": "4 K1Q"}) as r:
            assert r.status == 403


async def test_severity_rising_to_critical_starts_paging(h: Harness, clock: FakeClock) -> None:
    inc = await h.open_incident(Severity.DEGRADED)
    await h.tick(60)
    assert not h.notifier.sent  # type: ignore[attr-defined]
    async with h.store.transaction() as conn:
        await conn.execute("UPDATE incidents SET severity='critical' WHERE id=?", (inc.id,))
        fresh = await load(conn, inc.id)
        assert fresh is not None
        event = IncidentEvent(IncidentEventKind.SEVERITY, clock.now(), previous=Severity.DEGRADED)
        await h.pager.on_incident(conn, fresh, event)
    await h.tick()
    assert len(h.notifier.sent) == 1  # type: ignore[attr-defined]
    kinds = [e.kind for e in await h.timeline(inc)]
    assert kinds.count("routing") == 2


async def test_suppressed_incident_is_not_paged(h: Harness, clock: FakeClock) -> None:
    async with h.store.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO incidents (code, group_key, site, severity, state, title, opened_at, "
            "suppressed) VALUES ('M1X', 'site:m', 'm', 'critical', 'triggered', 'PBX down', ?, "
            "'sunday-upgrade')",
            (clock.now(),),
        )
        inc = await load(conn, int(cur.lastrowid or 0))
        assert inc is not None
        await h.pager.on_incident(conn, inc, IncidentEvent(IncidentEventKind.OPENED, clock.now()))
    await h.tick(600, step=10)
    assert not h.notifier.sent  # type: ignore[attr-defined]
    assert any("maintenance/silence sunday-upgrade" in e.text for e in await h.timeline(inc))


async def test_missing_policy_is_loud_on_the_timeline(tmp_path: Path, clock: FakeClock) -> None:
    cfg = config(routing={"default": {"support_hours": "office"}})
    h = await Harness(tmp_path, cfg, CALS, clock, None).start()
    try:
        inc = await h.open_incident()
        await h.tick(60)
        assert any(e.text.startswith("NOT PAGED") for e in await h.timeline(inc))
    finally:
        await h.close()


async def test_nobody_on_call_moves_on_at_once(tmp_path: Path, clock: FakeClock) -> None:
    cfg = config(routing={"default": {"support_hours": "office", "escalation_policy": "hollow"}})
    h = await Harness(tmp_path, cfg, CALS, clock, None).start()
    try:
        inc = await h.open_incident()
        await h.tick(2)
        assert [p.channel for p in h.notifier.sent] == ["sms"]  # type: ignore[attr-defined]
        texts = [e.text for e in await h.timeline(inc)]
        assert any("nobody is on call in schedule empty" in t for t in texts)
    finally:
        await h.close()


async def test_acked_before_delivery_is_not_sent(h: Harness) -> None:
    inc = await h.open_incident()
    await h.pager.run_due(h.clock.now())  # queued in the outbox, not yet delivered
    await h.acker.ack(inc.code, "alice", "api")
    while await h.worker.run_once():
        pass
    assert not h.notifier.sent  # type: ignore[attr-defined]
    assert any("page not sent" in e.text for e in await h.timeline(inc))


async def test_resolved_before_digest_is_dropped_and_digest_skipped(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = config(
        routing={
            "default": {
                "support_hours": "office",
                "escalation_policy": "noc",
                "digest_to": ["alice"],
            }
        }
    )
    h = await Harness(tmp_path, cfg, CALS, clock, None).start()
    try:
        inc = await h.open_incident(Severity.DEGRADED)
        await h.resolve_by_monitor(inc)
        clock.set(datetime(2026, 1, 12, 9, 0, tzinfo=NY))
        await h.tick(5)
        assert not h.notifier.sent  # type: ignore[attr-defined]
        assert any("dropped" in e.text for e in await h.timeline(inc))
    finally:
        await h.close()


def test_page_keys_are_deterministic() -> None:
    assert page_key([(7, 0, 1)], "alice", "voice") == "page.7.0.1.alice.voice"
    a = page_key([(3, 0, 0), (9, 1, 0)], "bob", "sms")
    b = page_key([(9, 1, 0), (3, 0, 0)], "bob", "sms")
    assert a == b and a.startswith("page.b3.") and a.endswith(".bob.sms")


def test_describe_on_call() -> None:
    rows = describe(config(), datetime(2026, 1, 10, 7, 0, tzinfo=UTC))
    assert [(r.schedule, r.person, r.name) for r in rows] == [
        ("empty", None, None),
        ("primary", "alice", "Alice Example"),
    ]
    assert rows[1].until == datetime(2026, 1, 10, 9, 0, tzinfo=NY)
