"""The `jira` ticket sink: Jira Cloud / Jira Service Management through REST API v2.

Before creating an issue the sink searches for one labelled with the ticket's fingerprint,
so a crash between "created" and "recorded the key" never yields a second issue. Comments
carry an `[nocd op N]` marker; a retry of an op that may have arrived looks for it first.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from nocd.clock import iso
from nocd.delivery import DeliveryError
from nocd.secrets import Secret
from nocd.tickets.sink import (
    SinkConfig,
    TicketOp,
    check_url,
    client_error,
    fact_label,
    http_error,
    retry_after,
    safe_url,
)

_DEFAULT_PRIORITIES = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"}


class Config(SinkConfig):
    """A Jira site, project and the names of its issue type, priorities and transitions."""

    type: Literal["jira"]
    base_url: str
    email: str
    api_token: Secret
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,9}$")
    issue_type: str = "Task"
    labels: tuple[str, ...] = ("nocd",)
    priorities: dict[str, str] | None = Field(
        default_factory=lambda: dict(_DEFAULT_PRIORITIES),
        description="Jira priority names; null when the create screen has no priority field",
    )
    resolve_transition: str = "Done"
    close_transition: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v and not set(v) <= set(_DEFAULT_PRIORITIES):
            raise ValueError("priorities maps P1, P2, P3, P4 to Jira priority names")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not x or " " in x for x in v):
            raise ValueError("Jira labels cannot be empty or contain spaces")
        return v


def marker(op: TicketOp) -> str:
    """The tag that makes a comment recognisable when an op is retried."""
    return f"[nocd op {op.seq}]"


def summary(op: TicketOp) -> str:
    """The issue summary (Jira refuses more than 254 characters)."""
    t = op.ticket
    return f"[{t.priority}] {t.title} ({t.incident_code})"[:254]


def description(op: TicketOp) -> str:
    """The issue description in wiki markup: facts table, due times, evidence."""
    t = op.ticket
    rows = [("Priority", t.priority), ("Incident", t.incident_code), ("Opened", iso(t.opened_at))]
    if t.response_due:
        rows.append(("Response due", iso(t.response_due)))
    if t.resolve_due:
        rows.append(("Resolve due", iso(t.resolve_due)))
    rows += [(fact_label(k), v) for k, v in t.facts.items()]
    table = "\n".join(f"||{k}|{_cell(v)}|" for k, v in rows)
    return f"{table}\n\n{{noformat}}\n{t.description}\n{{noformat}}"


def _cell(v: str) -> str:
    return v.replace("|", "/").replace("\n", " ") or " "


class _Api:
    """One session against the Jira REST API with the sink's error classification."""

    def __init__(self, cfg: Config, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        url = f"{self.cfg.base_url}/rest/api/2/{path}"
        what = f"Jira {method} {safe_url(url)}"
        try:
            async with self.session.request(method, url, allow_redirects=False, **kw) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 300:
                    wait = retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"))
                    raise http_error(resp.status, what, wait, _jira_message(text))
        except TimeoutError:
            raise DeliveryError(f"{what}: timed out after {self.cfg.timeout:g}s", True) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{what}: {client_error(exc)}", True) from None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise DeliveryError(f"{what}: reply is not JSON", True) from None


def _jira_message(text: str) -> str:
    """Jira's `errorMessages`/`errors` as one line (they name fields, never credentials)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    parts = [str(m) for m in doc.get("errorMessages") or []]
    parts += [f"{k}: {v}" for k, v in (doc.get("errors") or {}).items()]
    return "; ".join(parts)


class JiraSink:
    """Creates, comments on and transitions one Jira issue per ticket."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    def _auth(self) -> str:
        pair = f"{self._cfg.email}:{self._cfg.api_token.get_secret_value()}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    async def send(self, op: TicketOp) -> str:
        """Apply `op` to the ticket's issue (creating it if none exists); returns the key."""
        headers = {"Authorization": self._auth(), "Accept": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            api = _Api(self._cfg, session)
            key = op.provider_id or await self._find(api, op)
            if key is None:
                key = await self._create(api, op)
            if op.action == "create":
                return key
            await self._comment(api, key, op, check_first=op.in_doubt)
            if op.action == "resolve":
                await self._transition(api, key, self._cfg.resolve_transition)
            elif op.action == "close" and self._cfg.close_transition:
                await self._transition(api, key, self._cfg.close_transition)
            return key

    async def _find(self, api: _Api, op: TicketOp) -> str | None:
        jql = f'project = "{self._cfg.project}" AND labels = "{op.ticket.fingerprint}"'
        doc = await api.call(
            "GET", "search/jql", params={"jql": jql, "fields": "status", "maxResults": "2"}
        )
        issues = doc.get("issues") if isinstance(doc, dict) else None
        if issues:
            return str(issues[0]["key"])
        return None

    async def _create(self, api: _Api, op: TicketOp) -> str:
        cfg = self._cfg
        fields: dict[str, Any] = {
            "project": {"key": cfg.project},
            "issuetype": {"name": cfg.issue_type},
            "summary": summary(op),
            "description": description(op),
            "labels": [*cfg.labels, op.ticket.fingerprint],
        }
        if cfg.priorities and op.ticket.priority in cfg.priorities:
            fields["priority"] = {"name": cfg.priorities[op.ticket.priority]}
        doc = await api.call("POST", "issue", json={"fields": fields})
        if not isinstance(doc, dict) or "key" not in doc:
            raise DeliveryError("Jira create: reply has no issue key", True)
        return str(doc["key"])

    async def _comment(self, api: _Api, key: str, op: TicketOp, check_first: bool) -> None:
        tag = marker(op)
        if check_first:
            doc = await api.call("GET", f"issue/{key}/comment", params={"maxResults": "1000"})
            for c in (doc or {}).get("comments", []):
                if tag in str(c.get("body", "")):
                    return  # the earlier attempt got through
        await api.call("POST", f"issue/{key}/comment", json={"body": f"{op.comment}\n\n{tag}"})

    async def _transition(self, api: _Api, key: str, name: str) -> None:
        doc = await api.call("GET", f"issue/{key}/transitions")
        options = doc.get("transitions", []) if isinstance(doc, dict) else []
        for tr in options:
            if name.lower() in (str(tr.get("name", "")).lower(), _to_name(tr).lower()):
                body = {"transition": {"id": str(tr["id"])}}
                await api.call("POST", f"issue/{key}/transitions", json=body)
                return
        issue = await api.call("GET", f"issue/{key}", params={"fields": "status"})
        status = (issue or {}).get("fields", {}).get("status", {})
        if str(status.get("name", "")).lower() == name.lower() or (
            status.get("statusCategory", {}).get("key") == "done"
        ):
            return  # already there (an earlier attempt, or a person, moved it)
        known = ", ".join(str(t.get("name")) for t in options) or "none"
        raise DeliveryError(f"Jira {key}: no transition {name!r} (available: {known})", False)


def _to_name(tr: dict[str, Any]) -> str:
    to = tr.get("to")
    return str(to.get("name", "")) if isinstance(to, dict) else ""


def build(cfg: Config) -> JiraSink:
    """The sink for `cfg` (registry entry point)."""
    return JiraSink(cfg)
