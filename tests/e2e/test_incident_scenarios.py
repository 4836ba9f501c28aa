"""Scenario tests through the real pipeline (state → incidents) with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nocd.incidents.model import IncidentState
from nocd.model import Severity
from tests.harness import Harness

SITE = """
customers:
  acme: {name: Acme Dental, partner: Example Partner}
sites:
  main-street: {name: Main Street, customer: acme, timezone: America/New_York}
  elm-street: {name: Elm Street, customer: acme}
"""

Factory = Callable[[str], "AsyncIterator[Harness]"]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[[str], object]]:
    made: list[Harness] = []

    async def _make(yaml_text: str) -> Harness:
        h = await Harness.start(yaml_text, tmp_path / "nocd.db")
        made.append(h)
        return h

    yield _make
    for h in made:
        await h.close()


def phones_config(n: int) -> str:
    # Block style: the C (libyaml) fast path refuses `host:port` inside flow mappings.
    checks = "\n".join(
        f"  - name: phone-{i}\n    type: tcp\n    target: 127.0.0.1:9\n    site: main-street\n"
        f"    retries: 1\n    labels: {{role: phone}}"
        for i in range(n)
    )
    return (
        SITE
        + f"""
incidents:
  rules:
    - {{severity: critical, failing_ratio: 0.5, of: ["label:role=phone"]}}
    - {{severity: degraded, any_failing: ["label:role=phone"]}}
checks:
{checks}
"""
    )


async def test_5000_phones_unregistering_make_exactly_one_critical_incident(make) -> None:
    h = await make(phones_config(5000))
    # 5,000 phones unregister within 10 s, flushed in 10 batches as the daemon would.
    for batch in range(10):
        for i in range(batch * 500, (batch + 1) * 500):
            h.feed(f"phone-{i}", False)
        h.clock.advance(1)
        await h.flush()
    incidents = await h.incidents()
    assert len(incidents) == 1
    inc = incidents[0]
    assert inc.severity is Severity.CRITICAL
    assert inc.group_key == "site:main-street"
    assert len([m for m in inc.members if m.recovered_at is None]) == 5000


async def test_few_phones_missing_is_degraded_then_rises_to_critical(make) -> None:
    h = await make(phones_config(10))
    h.fail("phone-0")
    await h.flush()
    [inc] = await h.incidents()
    assert inc.severity is Severity.DEGRADED  # some phones down while others work: P2
    for i in range(1, 5):
        h.fail(f"phone-{i}")
    await h.flush()
    [inc] = await h.incidents()
    assert inc.severity is Severity.CRITICAL  # half the site's phones: P1
    kinds = [e.kind for e in await h.timeline(inc.id)]
    assert kinds.count("severity") == 1
    for i in range(5):
        h.recover(f"phone-{i}")
    await h.flush()
    [inc] = await h.incidents()
    assert inc.state is IncidentState.RESOLVED
    assert "resolved" in [e.kind for e in await h.timeline(inc.id)]


UPLINK = (
    SITE
    + """
checks:
  - {name: main-uplink, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 1,
     labels: {role: uplink}}
  - {name: main-pbx, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 1,
     depends_on: [main-uplink]}
  - {name: main-phones, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 1,
     depends_on: [main-pbx]}
  - {name: elm-pbx, type: tcp, target: 127.0.0.1:9, site: elm-street, retries: 1,
     depends_on: [main-uplink]}
"""
)


async def test_uplink_failure_is_one_incident_naming_the_uplink(make) -> None:
    h = await make(UPLINK)
    for name in ("main-uplink", "main-pbx", "main-phones", "elm-pbx"):
        h.feed(name, False)
    h.clock.advance(1)
    await h.flush()
    incidents = await h.incidents()
    assert len(incidents) == 1  # none for the children, not even at the other site
    inc = incidents[0]
    assert inc.cause == "main-uplink"
    assert "main-uplink down" in inc.title
    # SLAs exclude the customer's own ISP: an uplink outage is degraded by default.
    assert inc.severity is Severity.DEGRADED
    unreachable = {m.check for m in inc.members if m.severity is Severity.UNKNOWN}
    assert unreachable == {"main-pbx", "main-phones"}


async def test_child_failing_alone_opens_its_own_incident(make) -> None:
    h = await make(UPLINK)
    h.fail("elm-pbx")
    await h.flush()
    [inc] = await h.incidents()
    assert inc.group_key == "site:elm-street"
    assert inc.severity is Severity.CRITICAL


async def test_flapping_target_is_held_in_one_incident(make) -> None:
    h = await make(
        SITE
        + """
checks:
  - {name: flappy, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 1}
"""
    )
    for _ in range(15):
        h.fail("flappy")
        await h.flush()
        h.recover("flappy")
        await h.flush()
    incidents = await h.incidents()
    # Without flap detection this would be 15 incidents (and 15 pages); flapping holds one
    # open after the first few changes.
    assert len(incidents) <= 3
    assert h.pipeline.states["flappy"].flapping
    assert any(e.kind == "flapping" for e in await h.timeline(incidents[-1].id))


async def test_maintenance_suppresses_new_incident_but_not_a_resolve(make) -> None:
    h = await make(
        SITE
        + """
maintenance:
  - name: elm-upgrade
    match: {sites: [elm-street]}
    start: 2026-01-01T00:00:00Z
    end: 2026-01-01T06:00:00Z
checks:
  - {name: main-pbx, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 1}
  - {name: elm-pbx, type: tcp, target: 127.0.0.1:9, site: elm-street, retries: 1}
"""
    )
    # The harness clock starts at 2026-01-01T00:00Z: inside the elm-street window.
    h.fail("elm-pbx")
    h.fail("main-pbx")
    await h.flush()
    by_group = {i.group_key: i for i in await h.incidents()}
    assert by_group["site:elm-street"].suppressed == "maintenance:elm-upgrade"
    assert by_group["site:main-street"].suppressed is None
    elm_events = await h.timeline(by_group["site:elm-street"].id)
    assert [e.kind for e in elm_events].count("suppressed") == 1
    h.recover("elm-pbx")
    await h.flush()
    inc = {i.group_key: i for i in await h.incidents()}["site:elm-street"]
    assert inc.state is IncidentState.RESOLVED


async def test_ack_and_resolve_are_idempotent(make) -> None:
    h = await make(
        SITE
        + """
checks:
  - {name: main-pbx, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 2}
"""
    )
    h.fail("main-pbx")
    await h.flush()
    assert await h.incidents() == []  # one failure of two needed: soft, no incident
    h.fail("main-pbx")
    await h.flush()
    [inc] = await h.incidents()
    first = await h.actions.ack(inc.code.lower(), "alice", "sms")
    again = await h.actions.ack(inc.code, "alice", "sms")
    assert first.changed and not again.changed
    res = await h.actions.resolve(str(inc.id), "alice", "api")
    assert res.changed and res.state == "resolved"
    assert not (await h.actions.resolve(inc.code, "alice", "api")).changed
    kinds = [e.kind for e in await h.timeline(inc.id)]
    assert kinds == ["opened", "ack", "resolved"]


async def test_state_and_open_incident_survive_a_restart(tmp_path: Path) -> None:
    cfg = (
        SITE
        + """
checks:
  - {name: main-pbx, type: tcp, target: 127.0.0.1:9, site: main-street, retries: 1}
"""
    )
    h = await Harness.start(cfg, tmp_path / "nocd.db")
    h.fail("main-pbx")
    await h.flush()
    clock = h.clock
    await h.close()
    h2 = await Harness.start(cfg, tmp_path / "nocd.db", clock)
    try:
        assert not h2.pipeline.states["main-pbx"].up
        h2.fail("main-pbx")  # still down: no second incident
        await h2.flush()
        assert len(await h2.incidents()) == 1
        h2.recover("main-pbx")
        await h2.flush()
        [inc] = await h2.incidents()
        assert inc.state is IncidentState.RESOLVED
    finally:
        await h2.close()


async def test_failures_outside_active_hours_are_not_judged(make) -> None:
    h = await make("""
support_hours:
  shop:
    timezone: UTC
    weekly: {thu: ["09:00-17:00"]}
sites:
  shop: {name: Corner Shop, active_hours: shop}
checks:
  - {name: shop-pbx, type: tcp, target: 127.0.0.1:9, site: shop, retries: 1}
""")
    # The harness clock starts Thursday 2026-01-01 00:00 UTC: the shop is closed.
    h.fail("shop-pbx", times=3)
    await h.flush()
    assert await h.incidents() == []
    assert h.pipeline.results["shop-pbx"].verdict.severity is Severity.UNKNOWN
    h.clock.advance(10 * 3600)  # 10:00, open: the same failure now counts
    h.fail("shop-pbx")
    await h.flush()
    [inc] = await h.incidents()
    assert inc.severity is Severity.CRITICAL
