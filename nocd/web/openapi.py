"""The OpenAPI 3.0 document of /api/v1, kept beside the handlers and tested against them."""

from __future__ import annotations

from functools import cache
from typing import Any

from nocd import __version__

S = dict[str, Any]

_STR: S = {"type": "string"}
_NSTR: S = {"type": "string", "nullable": True}
_TIME: S = {"type": "string", "format": "date-time", "nullable": True}
_INT: S = {"type": "integer"}
_BOOL: S = {"type": "boolean"}
_OBJ: S = {"type": "object"}


def _ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: S) -> S:
    return {"type": "object", "required": required, "properties": props}


def _arr(item: S) -> S:
    return {"type": "array", "items": item}


def _json(schema: S, description: str) -> S:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "error")
_AUTH = {"401": _json(_ref("Error"), "no or bad token"), "403": _json(_ref("Error"), "scope")}

SCHEMAS: dict[str, S] = {
    "Error": _obj(["error"], error=_STR),
    "Check": _obj(
        ["name", "type", "status", "state", "last"],
        name=_STR,
        type=_STR,
        target=_NSTR,
        site=_NSTR,
        device=_NSTR,
        interval_s={"type": "number"},
        labels=_OBJ,
        enabled=_BOOL,
        status={"type": "string", "description": "ok, pending, soft_failing or the severity"},
        state={"type": "object", "nullable": True},
        last={"type": "object", "nullable": True},
    ),
    "Site": _obj(
        ["key", "name", "colour", "status", "checks", "phones", "incidents"],
        key=_STR,
        name=_STR,
        customer=_NSTR,
        timezone=_STR,
        colour={"type": "string", "enum": ["green", "amber", "red"]},
        status=_STR,
        checks=_arr(_OBJ),
        phones={
            "type": "object",
            "nullable": True,
            "properties": {"registered": _INT, "expected": _INT},
        },
        incidents=_arr(_OBJ),
    ),
    "Incident": _obj(
        ["id", "code", "severity", "state", "title", "opened_at", "members"],
        id=_INT,
        code=_STR,
        severity=_STR,
        state={"type": "string", "enum": ["triggered", "acknowledged", "resolved"]},
        title=_STR,
        group=_STR,
        site=_NSTR,
        customer=_NSTR,
        cause=_NSTR,
        opened_at=_TIME,
        acked_at=_TIME,
        acked_by=_NSTR,
        resolved_at=_TIME,
        resolved_by=_NSTR,
        suppressed=_NSTR,
        members=_arr(_OBJ),
        timeline=_arr(_obj(["id", "at", "kind", "text"], id=_INT, at=_TIME, kind=_STR, text=_STR)),
    ),
    "ActionResult": _obj(
        ["ok", "changed", "incident", "state", "message"],
        ok=_BOOL,
        changed=_BOOL,
        incident=_NSTR,
        state=_NSTR,
        message=_STR,
    ),
    "Silence": _obj(
        ["id", "name", "match", "starts_at", "ends_at", "state", "active"],
        kind=_STR,
        id=_INT,
        name=_STR,
        match=_OBJ,
        starts_at=_TIME,
        ends_at=_TIME,
        created_by=_STR,
        comment=_STR,
        public=_BOOL,
        state={"type": "string", "enum": ["pending", "active", "expired"]},
        active=_BOOL,
        expired_at=_TIME,
    ),
    "SilenceRequest": {
        **_obj(
            ["name", "match"],
            name={"type": "string", "minLength": 1, "maxLength": 120},
            match={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "checks": _arr(_STR),
                    "sites": _arr(_STR),
                    "customers": _arr(_STR),
                    "labels": {"type": "object", "additionalProperties": _STR},
                },
            },
            starts_at={"type": "string", "format": "date-time"},
            ends_at={"type": "string", "format": "date-time"},
            duration={"type": "string", "example": "2h"},
            comment={"type": "string", "maxLength": 2000},
            public=_BOOL,
        ),
        "additionalProperties": False,
    },
    "Ticket": _obj(
        ["id", "incident_id", "status", "priority", "title"],
        id=_INT,
        incident=_NSTR,
        incident_id=_INT,
        status=_STR,
        priority=_STR,
        worst_priority=_STR,
        title=_STR,
        plan=_NSTR,
        facts=_OBJ,
        opened_at=_TIME,
        response_due=_TIME,
        resolve_due=_TIME,
        responded_at=_TIME,
        resolved_at=_TIME,
        closed_at=_TIME,
        rfo_due=_TIME,
        rfo_delivered_at=_TIME,
    ),
    "OnCall": _obj(
        ["schedule", "person", "name", "until"],
        schedule=_STR,
        person=_NSTR,
        name=_NSTR,
        until=_TIME,
    ),
}


def _q(name: str, schema: S, description: str = "") -> S:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, pattern: str) -> S:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": pattern},
    }


_REF = _path("ref", "^[A-Za-z0-9]{1,12}$")
_VIA_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"via": {"type": "string", "enum": ["api", "cli"]}},
            }
        }
    },
}


def _op(summary: str, scope: str, ok: S, **extra: Any) -> S:
    responses: S = {"200": ok, "400": _ERR, **_AUTH}
    responses.update(extra.pop("responses", {}))
    return {"summary": summary, "security": [{"bearer": [scope]}], "responses": responses, **extra}


def _action(summary: str) -> S:
    return _op(
        summary,
        "write",
        _json(_ref("ActionResult"), "done, or already so (changed=false)"),
        parameters=[_REF],
        requestBody=_VIA_BODY,
        responses={"404": _ERR},
    )


@cache
def document() -> S:
    """The OpenAPI document (built once)."""
    sev = {"type": "string", "enum": ["critical", "degraded", "low", "unknown"]}
    limit = {"type": "integer", "minimum": 1, "maximum": 1000}
    paths: S = {
        "/api/v1/status": {
            "get": _op(
                "Overall state; ok is false when not ready or a critical incident is open",
                "read",
                _json(
                    _obj(
                        ["version", "ready", "conditions", "checks", "incidents", "ok"],
                        version=_STR,
                        ready=_BOOL,
                        conditions=_OBJ,
                        checks=_OBJ,
                        incidents=_OBJ,
                        ok=_BOOL,
                    ),
                    "status",
                ),
            )
        },
        "/api/v1/checks": {
            "get": _op(
                "Checks with current state and last observation",
                "read",
                _json(_obj(["checks"], checks=_arr(_ref("Check"))), "checks"),
                parameters=[
                    _q("site", _STR),
                    _q("status", {"type": "string", "enum": ["any", "ok", "failing"]}),
                ],
            )
        },
        "/api/v1/checks/{name}": {
            "get": _op(
                "One check",
                "read",
                _json(_ref("Check"), "the check"),
                parameters=[_path("name", "^.{1,200}$")],
                responses={"404": _ERR},
            )
        },
        "/api/v1/sites": {
            "get": _op(
                "Sites: traffic light, checks, registered/expected phones, open incidents",
                "read",
                _json(_obj(["sites"], sites=_arr(_ref("Site"))), "sites"),
            )
        },
        "/api/v1/sites/{site}": {
            "get": _op(
                "One site",
                "read",
                _json(_ref("Site"), "the site"),
                parameters=[_path("site", "^.{1,200}$")],
                responses={"404": _ERR},
            )
        },
        "/api/v1/incidents": {
            "get": _op(
                "Incidents, newest first",
                "read",
                _json(_obj(["incidents"], incidents=_arr(_ref("Incident"))), "incidents"),
                parameters=[
                    _q(
                        "state",
                        {
                            "type": "string",
                            "enum": ["open", "all", "triggered", "acknowledged", "resolved"],
                        },
                        "open (default) means not resolved",
                    ),
                    _q("severity", sev),
                    _q("site", _STR),
                    _q("limit", limit),
                ],
            )
        },
        "/api/v1/incidents/{ref}": {
            "get": _op(
                "One incident (by code or id) with members and timeline",
                "read",
                _json(_ref("Incident"), "the incident"),
                parameters=[_REF],
                responses={"404": _ERR},
            )
        },
        "/api/v1/incidents/{ref}/ack": {"post": _action("Acknowledge (stops escalation)")},
        "/api/v1/incidents/{ref}/resolve": {"post": _action("Resolve by hand")},
        "/api/v1/incidents/{ref}/notes": {
            "post": _op(
                "Add a note to the timeline ('root cause: …' and 'remedy: …' feed the RFO)",
                "write",
                _json(_ref("ActionResult"), "note added"),
                parameters=[_REF],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                ["text"], text={"type": "string", "minLength": 1, "maxLength": 4000}
                            )
                        }
                    },
                },
                responses={"404": _ERR},
            )
        },
        "/api/v1/incidents/{ref}/rfo": {
            "get": _op(
                "Reason For Outage report",
                "read",
                {
                    "description": "the report",
                    "content": {"text/markdown": {"schema": _STR}, "text/html": {"schema": _STR}},
                },
                parameters=[_REF, _q("format", {"type": "string", "enum": ["markdown", "html"]})],
                responses={"404": _ERR, "501": _ERR},
            )
        },
        "/api/v1/tickets": {
            "get": _op(
                "Tickets, newest first",
                "read",
                _json(_obj(["tickets"], tickets=_arr(_ref("Ticket"))), "tickets"),
                parameters=[
                    _q(
                        "status",
                        {"type": "string", "enum": ["open", "acknowledged", "resolved", "closed"]},
                    ),
                    _q("limit", limit),
                ],
                responses={"501": _ERR},
            )
        },
        "/api/v1/maintenance": {
            "get": _op(
                "Configured maintenance windows and run-time silences not yet over",
                "read",
                _json(
                    _obj(
                        ["windows", "silences"], windows=_arr(_OBJ), silences=_arr(_ref("Silence"))
                    ),
                    "maintenance",
                ),
            )
        },
        "/api/v1/silences": {
            "get": _op(
                "Silences not yet over (all=true: also expired)",
                "read",
                _json(_obj(["silences"], silences=_arr(_ref("Silence"))), "silences"),
                parameters=[_q("all", {"type": "string", "enum": ["true", "false"]})],
            ),
            "post": _op(
                "Create a silence (no new pages or tickets for matching checks)",
                "write",
                _json(_ref("Silence"), "unused"),
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SilenceRequest")}},
                },
                responses={"201": _json(_ref("Silence"), "created")},
            ),
        },
        "/api/v1/silences/{id}/expire": {
            "post": _op(
                "End a silence now (changed=false when it was already over)",
                "write",
                _json(
                    _obj(["changed", "silence"], changed=_BOOL, silence=_ref("Silence")), "expired"
                ),
                parameters=[_path("id", "^[0-9]{1,12}$")],
                responses={"404": _ERR},
            )
        },
        "/api/v1/oncall": {
            "get": _op(
                "Who is on call in each schedule now (or at `at`) and until when",
                "read",
                _json(
                    _obj(["at", "schedules"], at=_TIME, schedules=_arr(_ref("OnCall"))), "on call"
                ),
                parameters=[_q("at", _STR, "ISO-8601 time (default now); naive means UTC")],
                responses={"501": _ERR},
            )
        },
        "/api/v1/heartbeat/{name}": {
            "post": _op(
                "A heartbeat from a `heartbeat` check's sender (cron job, backup, PBX script)",
                "write",
                _json(_obj(["check", "status"], check=_STR, status=_STR), "recorded"),
                parameters=[_path("name", "^.{1,200}$")],
                responses={"404": _ERR},
            )
        },
        "/api/v1/alertmanager": {
            "post": _op(
                "Alertmanager webhook (payload version 4) feeding `alertmanager` checks",
                "write",
                _json(_OBJ, "accepted"),
                requestBody={"required": True, "content": {"application/json": {"schema": _OBJ}}},
                responses={"404": _ERR, "413": _ERR},
            )
        },
    }
    # The POST that creates answers 201 only; drop the generic 200 from it.
    del paths["/api/v1/silences"]["post"]["responses"]["200"]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "nocd API",
            "version": __version__,
            "description": "NOC monitoring and paging daemon. Bearer tokens with scopes read/write.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
