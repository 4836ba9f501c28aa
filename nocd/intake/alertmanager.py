"""`POST /api/v1/alertmanager`: Alertmanager webhook (payload version 4) → external observations."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from checks import alertmanager as am_check
from nocd.model import Observation

log = structlog.get_logger(__name__)

Authorize = Callable[[web.Request, str], Awaitable[None] | None]
Submit = Callable[[str, Observation], None]
Rules = Sequence[am_check.Config] | Callable[[], Sequence[am_check.Config]]
MAX_BODY = 4 << 20  # Alertmanager batches alerts per group; 4 MiB is far above real payloads


class WebhookAlert(BaseModel):
    """One alert of the webhook payload (unknown fields are ignored, as Alertmanager adds some)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # Alertmanager's field names (camelCase)
    endsAt: str = ""
    fingerprint: str = ""

    def key(self) -> str:
        """Alertmanager's fingerprint, or one derived from the labels (older senders)."""
        if self.fingerprint:
            return self.fingerprint
        text = json.dumps(sorted(self.labels.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    alerts: list[WebhookAlert]


class AlertmanagerIntake:
    """Keeps which matching alerts fire per check and submits the aggregate on every change."""

    def __init__(self, rules: Rules, submit: Submit) -> None:
        self._rules = rules
        self.submit = submit
        self.firing: dict[str, dict[str, WebhookAlert]] = {}  # check → fingerprint → alert
        self.received = 0  # alerts accepted
        self.unmatched = 0  # alerts no check selects
        self.rejected = 0  # payloads refused as invalid

    def rules(self) -> Sequence[am_check.Config]:
        """The current rules (a callable lets a config reload swap them)."""
        rules = self._rules() if callable(self._rules) else self._rules
        return [r for r in rules if r.enabled]

    def apply(self, payload: WebhookPayload) -> list[str]:
        """Apply one validated payload; returns the checks whose result was submitted."""
        rules = self.rules()
        touched: dict[str, am_check.Config] = {}
        for alert in payload.alerts:
            self.received += 1
            hits = [r for r in rules if r.selects(alert.labels)]
            if not hits:
                self.unmatched += 1
                log.info("unmatched alert", alertname=alert.labels.get("alertname", ""))
            for rule in hits:
                book = self.firing.setdefault(rule.name, {})
                if alert.status == "firing":
                    book[alert.key()] = alert
                else:
                    book.pop(alert.key(), None)
                touched[rule.name] = rule
        for name, rule in touched.items():
            active = list(self.firing.get(name, {}).values())
            if active:
                obs = am_check.firing(rule, [(a.labels, a.annotations) for a in active])
            else:
                self.firing.pop(name, None)
                last = next(
                    (a for a in payload.alerts if rule.selects(a.labels)), payload.alerts[0]
                )
                obs = am_check.resolved(last.labels.get("alertname", "alert"))
            self.submit(name, obs)
        return list(touched)

    def routes(self, authorize: Authorize) -> list[web.RouteDef]:
        """The webhook route feeding this intake."""

        async def webhook(request: web.Request) -> web.Response:
            result = authorize(request, "write")
            if inspect.isawaitable(result):
                await result
            body = await _read_bounded(request, MAX_BODY)
            if body is None:
                self.rejected += 1
                return _bad("payload too large", 413)
            try:
                payload = WebhookPayload.model_validate_json(body)
            except ValidationError as exc:
                self.rejected += 1
                return _bad(_first_error(exc), 400)
            checks = self.apply(payload)
            return web.json_response(
                {"status": "accepted", "alerts": len(payload.alerts), "checks": checks}
            )

        return [web.post("/api/v1/alertmanager", webhook)]


def routes(authorize: Authorize, rules: Rules, submit: Submit) -> list[web.RouteDef]:
    """The webhook route (build an `AlertmanagerIntake` yourself to read its counters)."""
    return AlertmanagerIntake(rules, submit).routes(authorize)


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `limit` (a hostile sender can't fill memory)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "json_invalid":
        return "invalid JSON: expected an Alertmanager webhook payload (version 4)"
    return f"invalid Alertmanager webhook payload at {where}: {err['msg']}"


def _bad(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)
