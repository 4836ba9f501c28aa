"""A fake Jira Cloud REST API (v2 and v3) on 127.0.0.1, built from Atlassian's documentation.

Implements what a ticket integration uses: create issue, get issue, JQL search
(`/search/jql`; the removed `/search` answers 410 Gone as Jira Cloud does since 2025),
comments, transitions; basic auth with email:api_token; Jira's error bodies
(`{"errorMessages": [...], "errors": {...}}`); injected failures (429 + Retry-After, 5xx).
v3 requires Atlassian Document Format bodies where v2 takes plain strings.
"""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

STATUSES = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
TRANSITIONS = (("11", "To Do"), ("21", "In Progress"), ("31", "Done"))
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
ISSUE_TYPES = ("Task", "Bug", "Incident", "Service request")
_CLAUSE = re.compile(r'^\s*(\w+)\s*=\s*(?:"([^"]*)"|([^\s"]+))\s*$')


@dataclass
class Issue:
    """One issue as the fake stores it."""

    id: str
    key: str
    fields: dict[str, Any]
    status: str = "To Do"
    comments: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, messages: list[str], errors: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errorMessages": messages, "errors": errors or {}}, status=status)


def _is_adf(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("type") == "doc" and doc.get("version") == 1


def adf_text(doc: Any) -> str:
    """The plain text inside an ADF document (for assertions)."""
    if isinstance(doc, dict):
        return str(doc.get("text", "")) + "".join(adf_text(c) for c in doc.get("content", []))
    return ""


@dataclass
class JiraFake:
    """State and handlers; `fail_next` queues (status, Retry-After) replies for any request.

    For an outage of any length: `fail_all` answers every request with (status, Retry-After)
    and `hang` holds every request unanswered (the client times out), until cleared.
    """

    email: str
    token: str
    projects: tuple[str, ...] = ("NOC",)
    issues: dict[str, Issue] = field(default_factory=dict)
    fail_next: list[tuple[int, str | None]] = field(default_factory=list)
    fail_all: tuple[int, str | None] | None = None
    hang: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        while self.hang:  # cleared by the test or by stop()
            await asyncio.sleep(0.05)
        failure = self.fail_next.pop(0) if self.fail_next else self.fail_all
        if failure is not None:
            status, after = failure
            headers = {"Retry-After": after} if after else {}
            return web.json_response(
                {"errorMessages": ["Rate limit exceeded." if status == 429 else "Internal error"]},
                status=status,
                headers=headers,
            )
        want = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {want}":
            text = "Client must be authenticated to access this resource."
            return web.Response(status=401, text=text)
        return await handler(request)

    def _issue(self, request: web.Request) -> Issue | None:
        ref = request.match_info["key"]
        return self.issues.get(ref) or next((i for i in self.issues.values() if i.id == ref), None)

    def _view(self, issue: Issue, request: web.Request, wanted: str | None) -> dict[str, Any]:
        fields = {**issue.fields, "status": self._status(issue.status)}
        if wanted:
            names = set(wanted.split(","))
            if "*all" not in names:
                fields = {k: v for k, v in fields.items() if k in names}
        return {
            "id": issue.id,
            "key": issue.key,
            "self": f"{self.base_url}/rest/api/2/issue/{issue.id}",
            "fields": fields,
        }

    @staticmethod
    def _status(name: str) -> dict[str, Any]:
        return {"name": name, "statusCategory": {"key": STATUSES[name]}}

    async def create(self, request: web.Request) -> web.Response:
        """POST /rest/api/{2,3}/issue."""
        v3 = request.match_info["v"] == "3"
        try:
            body = await request.json()
            fields = dict(body["fields"])
        except (ValueError, KeyError, TypeError):
            return _error(400, ["Invalid request payload. Refer to the REST API documentation."])
        errors: dict[str, str] = {}
        project = (fields.get("project") or {}).get("key")
        if project not in self.projects:
            errors["project"] = "valid project is required"
        summary = fields.get("summary")
        if not summary:
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 254 or "\n" in summary:
            errors["summary"] = "Summary must be less than 255 characters."
        if (fields.get("issuetype") or {}).get("name") not in ISSUE_TYPES:
            errors["issuetype"] = "Specify an issue type"
        prio = fields.get("priority")
        if prio is not None and (prio or {}).get("name") not in PRIORITIES:
            errors["priority"] = "Specify a valid 'id' or 'name' for Priority"
        for label in fields.get("labels", []):
            if " " in label:
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        desc = fields.get("description")
        if desc is not None and (v3 != _is_adf(desc) or (not v3 and not isinstance(desc, str))):
            errors["description"] = "Operation value must be " + (
                "an Atlassian Document (see the Atlassian Document Format)" if v3 else "a string"
            )
        if errors:
            return _error(400, [], errors)
        n = len(self.issues) + 1
        issue = Issue(str(10000 + n), f"{project}-{n}", fields)
        self.issues[issue.key] = issue
        link = f"{self.base_url}/rest/api/2/issue/{issue.id}"
        return web.json_response({"id": issue.id, "key": issue.key, "self": link}, status=201)

    async def get(self, request: web.Request) -> web.Response:
        """GET /rest/api/{2,3}/issue/{key}."""
        issue = self._issue(request)
        if issue is None:
            return _error(404, ["Issue does not exist or you do not have permission to see it."])
        return web.json_response(self._view(issue, request, request.query.get("fields")))

    async def search_removed(self, request: web.Request) -> web.Response:
        """GET /rest/api/{2,3}/search: removed from Jira Cloud (CHANGE-2046)."""
        return _error(
            410,
            [
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                "API. A full migration guideline is available at "
                "https://developer.atlassian.com/changelog/#CHANGE-2046"
            ],
        )

    async def search(self, request: web.Request) -> web.Response:
        """GET /rest/api/{2,3}/search/jql: `a = b AND c = "d"` clauses, ORDER BY ignored."""
        jql = request.query.get("jql", "")
        where = re.split(r"\s+order\s+by\s+", jql, flags=re.IGNORECASE)[0]
        clauses = [c for c in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE) if c.strip()]
        tests: list[tuple[str, str]] = []
        for clause in clauses:
            m = _CLAUSE.match(clause)
            if not m:
                return _error(400, [f"Error in the JQL Query: unable to parse '{clause.strip()}'."])
            name, value = m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3)
            if name not in ("project", "labels", "key", "status"):
                msg = f"Field '{m.group(1)}' does not exist or you do not have permission to view"
                return _error(400, [msg + " it."])
            tests.append((name, value))
        found = [i for i in self.issues.values() if all(self._match(i, n, v) for n, v in tests)]
        limit = int(request.query.get("maxResults", "50"))
        wanted = request.query.get("fields")
        return web.json_response(
            {"issues": [self._view(i, request, wanted) for i in found[:limit]], "isLast": True}
        )

    @staticmethod
    def _match(issue: Issue, name: str, value: str) -> bool:
        if name == "project":
            return bool(issue.fields["project"]["key"] == value)
        if name == "labels":
            return value in issue.fields.get("labels", [])
        if name == "key":
            return issue.key == value
        return issue.status.lower() == value.lower()

    async def comments(self, request: web.Request) -> web.Response:
        """GET /rest/api/{2,3}/issue/{key}/comment."""
        issue = self._issue(request)
        if issue is None:
            return _error(404, ["Issue does not exist or you do not have permission to see it."])
        total = len(issue.comments)
        return web.json_response(
            {"startAt": 0, "maxResults": 5000, "total": total, "comments": issue.comments}
        )

    async def add_comment(self, request: web.Request) -> web.Response:
        """POST /rest/api/{2,3}/issue/{key}/comment."""
        issue = self._issue(request)
        if issue is None:
            return _error(404, ["Issue does not exist or you do not have permission to see it."])
        v3 = request.match_info["v"] == "3"
        try:
            text = (await request.json())["body"]
        except (ValueError, KeyError, TypeError):
            return _error(400, [], {"comment": "Comment body can not be empty!"})
        if (v3 and not _is_adf(text)) or (not v3 and (not isinstance(text, str) or not text)):
            return _error(400, [], {"comment": "Comment body can not be empty!"})
        comment = {"id": str(len(issue.comments) + 1), "body": text}
        issue.comments.append(comment)
        return web.json_response(comment, status=201)

    async def transitions(self, request: web.Request) -> web.Response:
        """GET /rest/api/{2,3}/issue/{key}/transitions: those leaving the current status."""
        issue = self._issue(request)
        if issue is None:
            return _error(404, ["Issue does not exist or you do not have permission to see it."])
        out = [
            {"id": tid, "name": name, "to": self._status(name)}
            for tid, name in TRANSITIONS
            if name != issue.status
        ]
        return web.json_response({"expand": "transitions", "transitions": out})

    async def transition(self, request: web.Request) -> web.Response:
        """POST /rest/api/{2,3}/issue/{key}/transitions: 204 on success."""
        issue = self._issue(request)
        if issue is None:
            return _error(404, ["Issue does not exist or you do not have permission to see it."])
        try:
            tid = str((await request.json())["transition"]["id"])
        except (ValueError, KeyError, TypeError):
            return _error(400, ["Missing 'transition' identifier"])
        target = next((n for i, n in TRANSITIONS if i == tid and n != issue.status), None)
        if target is None:
            return _error(400, [f"Transition id '{tid}' is not valid for this issue."])
        issue.status = target
        return web.Response(status=204)

    async def start(self) -> str:
        """Listen on 127.0.0.1 (ephemeral port); returns the base URL."""
        app = web.Application(middlewares=[self._gate])
        r = app.router
        base = r"/rest/api/{v:[23]}"
        r.add_post(f"{base}/issue", self.create)
        r.add_get(f"{base}/search", self.search_removed)
        r.add_get(f"{base}/search/jql", self.search)
        r.add_get(f"{base}/issue/{{key}}", self.get)
        r.add_get(f"{base}/issue/{{key}}/comment", self.comments)
        r.add_post(f"{base}/issue/{{key}}/comment", self.add_comment)
        r.add_get(f"{base}/issue/{{key}}/transitions", self.transitions)
        r.add_post(f"{base}/issue/{{key}}/transitions", self.transition)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening."""
        self.hang = False
        if self._runner is not None:
            await self._runner.cleanup()
