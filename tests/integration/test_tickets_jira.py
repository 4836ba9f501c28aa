"""The Jira sink against the Jira Cloud fake: create, find-before-create, comments, transitions."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest

from nocd.delivery import DeliveryError
from nocd.tickets import jira
from nocd.tickets.sink import AUTH_RETRY, TicketOp, TicketView
from tests.fakes.jira_fake import JiraFake, adf_text

T0 = 1_767_261_600.0
VIEW = TicketView(
    7,
    42,
    "K7Q",
    "nocd-42-1767261600",
    "PBX unreachable | Main Street",
    "evidence: no SYN-ACK",
    "P1",
    "open",
    T0,
    T0 + 900,
    None,
    "main-street",
    "acme",
    {"serial": "SN-0001"},
)
TOKEN = "jira-token-91ab"


def op(
    action: str = "create", seq: int = 1, pid: str | None = None, doubt: bool = False
) -> TicketOp:
    o = TicketOp(action, seq, f"ticket:42:jira:{seq}", T0, f"change {seq}", VIEW)  # type: ignore[arg-type]
    return o.delivering(pid, doubt)


@pytest.fixture
async def fake() -> AsyncIterator[JiraFake]:
    f = JiraFake("noc@example.com", TOKEN)
    await f.start()
    yield f
    await f.stop()


def sink(fake: JiraFake, monkeypatch: pytest.MonkeyPatch, **kw: object) -> jira.JiraSink:
    monkeypatch.setenv("NOCD_TEST_JIRA_TOKEN", str(kw.pop("token", TOKEN)))
    cfg = jira.Config.model_validate(
        {
            "type": "jira",
            "base_url": fake.base_url + "/",
            "email": "noc@example.com",
            "api_token": "${NOCD_TEST_JIRA_TOKEN}",
            "project": "NOC",
            **kw,
        }
    )
    return jira.build(cfg)


async def test_create_comment_resolve(fake: JiraFake, monkeypatch: pytest.MonkeyPatch) -> None:
    s = sink(fake, monkeypatch)
    key = await s.send(op())
    assert key == "NOC-1"
    issue = fake.issues["NOC-1"]
    assert issue.fields["summary"] == "[P1] PBX unreachable | Main Street (K7Q)"
    assert issue.fields["labels"] == ["nocd", "nocd-42-1767261600"]
    assert issue.fields["priority"] == {"name": "Highest"}
    assert "||Serial|SN-0001|" in issue.fields["description"]
    assert "||Response due|2026-01-01T10:15:00Z|" in issue.fields["description"]
    assert await s.send(op("update", 2, key)) == key
    assert await s.send(op("resolve", 3, key)) == key
    assert [c["body"] for c in issue.comments] == [
        "change 2\n\n[nocd op 2]",
        "change 3\n\n[nocd op 3]",
    ]
    assert issue.status == "Done"
    # The removed search endpoint was never used; the JQL search was.
    paths = [p for _, p in fake.requests]
    assert "/rest/api/2/search" not in paths and "/rest/api/2/search/jql" in paths


async def test_find_before_create_and_in_doubt_comments(
    fake: JiraFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sink(fake, monkeypatch)
    assert await s.send(op()) == "NOC-1"
    # The key was lost (crash before it was recorded): the label finds the issue again.
    assert await s.send(op()) == "NOC-1"
    assert await s.send(op("update", 2)) == "NOC-1"
    # A retry of op 2 that may have arrived: the marker is found, no second comment.
    assert await s.send(op("update", 2, "NOC-1", doubt=True)) == "NOC-1"
    assert len(fake.issues) == 1 and len(fake.issues["NOC-1"].comments) == 1


async def test_update_before_any_create_creates_from_the_snapshot(
    fake: JiraFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink added after the ticket opened (or a create refused for good) still gets an issue."""
    s = sink(fake, monkeypatch)
    assert await s.send(op("resolve", 4)) == "NOC-1"
    issue = fake.issues["NOC-1"]
    assert issue.status == "Done" and len(issue.comments) == 1


async def test_transition_already_done_and_unknown(
    fake: JiraFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sink(fake, monkeypatch)
    key = await s.send(op())
    fake.issues[key].status = "Done"  # a person resolved it in Jira first
    await s.send(op("resolve", 2, key))
    assert fake.issues[key].status == "Done"
    other = sink(fake, monkeypatch, close_transition="Archive")
    fake.issues[key].status = "To Do"
    with pytest.raises(DeliveryError) as err:
        await other.send(op("close", 3, key))
    assert not err.value.retryable
    assert "no transition 'Archive' (available: In Progress, Done)" in err.value.reason


async def test_errors_are_classified_and_never_show_the_token(
    fake: JiraFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail_next = [(429, "12"), (502, None)]
    s = sink(fake, monkeypatch)
    with pytest.raises(DeliveryError) as err:
        await s.send(op())
    assert err.value.retryable and err.value.retry_after == 12.0
    with pytest.raises(DeliveryError) as err:
        await s.send(op())
    assert err.value.retryable and "HTTP 502" in err.value.reason
    bad = sink(fake, monkeypatch, token="wrong-token-55")
    with pytest.raises(DeliveryError) as err:
        await bad.send(op())
    assert err.value.retryable and err.value.retry_after == AUTH_RETRY
    assert "HTTP 401" in err.value.reason and "wrong-token-55" not in err.value.reason
    # A field Jira refuses is permanent, with Jira's own message.
    odd = sink(fake, monkeypatch, issue_type="Epic")
    with pytest.raises(DeliveryError) as err:
        await odd.send(op())
    assert not err.value.retryable and "issuetype: Specify an issue type" in err.value.reason
    assert fake.issues == {}


async def test_fake_is_faithful_to_the_documented_api(fake: JiraFake) -> None:
    """v3 takes ADF bodies, v2 plain strings; the removed /search answers 410."""
    auth = "Basic " + base64.b64encode(f"noc@example.com:{TOKEN}".encode()).decode()
    adf = {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "hello"}]}],
    }
    fields = {"project": {"key": "NOC"}, "issuetype": {"name": "Task"}, "summary": "s"}
    async with aiohttp.ClientSession(fake.base_url, headers={"Authorization": auth}) as http:
        async with http.post(
            "/rest/api/3/issue", json={"fields": {**fields, "description": "x"}}
        ) as r:
            assert r.status == 400
        async with http.post(
            "/rest/api/3/issue", json={"fields": {**fields, "description": adf}}
        ) as r:
            assert r.status == 201 and (await r.json())["key"] == "NOC-1"
        async with http.post("/rest/api/3/issue/NOC-1/comment", json={"body": "plain"}) as r:
            assert r.status == 400
        async with http.post("/rest/api/3/issue/NOC-1/comment", json={"body": adf}) as r:
            assert r.status == 201
        async with http.get("/rest/api/2/search", params={"jql": "project = NOC"}) as r:
            assert r.status == 410
        async with http.get("/rest/api/2/search/jql", params={"jql": "bogus = 1"}) as r:
            assert r.status == 400 and "does not exist" in (await r.json())["errorMessages"][0]
        async with http.get("/rest/api/2/issue/NOC-9") as r:
            assert r.status == 404
        async with http.post(
            "/rest/api/2/issue/NOC-1/transitions", json={"transition": {"id": "99"}}
        ) as r:
            assert r.status == 400
    assert adf_text(fake.issues["NOC-1"].comments[0]["body"]) == "hello"
