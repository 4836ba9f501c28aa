"""Generate docs/config.md, the config reference, from the pydantic models (`--check` diffs).

Types and defaults come from the models; a key's meaning comes from its `Field(description=)`
or, when it has none, from MEANINGS below. A key with neither fails `--check` (and the test
that runs it), so a new key cannot ship undocumented.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks.base import CheckConfig  # noqa: E402
from checks.registry import check_types  # noqa: E402
from nocd import inventory  # noqa: E402
from nocd.config import Config  # noqa: E402
from nocd.duration import format_duration, parse_duration  # noqa: E402
from nocd.model import FailureClass, Severity  # noqa: E402
from nocd.secrets import resolve_secret  # noqa: E402
from nocd.tickets.registry import sink_types  # noqa: E402
from nocd.tickets.sink import SinkConfig  # noqa: E402

OUT = ROOT / "docs" / "config.md"

# Meanings of keys whose model field has no description, keyed "<Model>.<key>" (a class
# named Config is spelled with its module, e.g. "checks.http.Config.method").
MEANINGS: dict[str, str] = {
    # top level
    "nocd.config.Config.daemon": "process settings: listener, state file, logging, trap receiver",
    "nocd.config.Config.customers": "customers by key: name, partner (reseller), support plan",
    "nocd.config.Config.sites": "sites by key: customer, time zone, country, contacts, devices",
    "nocd.config.Config.support_plans": "support plans by key: response/resolve targets per class",
    "nocd.config.Config.support_hours": "named support-hours calendars (used by plans and paging)",
    "nocd.config.Config.checks": "the checks; each has a unique `name` and a `type`",
    "nocd.config.Config.incidents": "how failing checks are grouped into incidents and judged",
    "nocd.config.Config.maintenance": "planned maintenance windows (suppress pages and tickets)",
    "nocd.config.Config.tickets": "ticket sinks and RFO due times",
    "nocd.config.Config.paging": "provider, people, schedules, escalation, routing",
    "nocd.config.Config.api": "JSON API tokens",
    # daemon
    "DaemonConfig.listen": "host:port of the one HTTP listener (metrics, API, webhooks, dashboard)",
    "DaemonConfig.public_url": "http(s) URL the outside (Twilio) uses to reach this listener",
    "DaemonConfig.state_path": "SQLite database file (state, incidents, tickets, outbox)",
    "DaemonConfig.log_level": "minimum level logged",
    "DaemonConfig.log_format": "`auto`: JSON lines under journald, readable on a TTY",
    "DaemonConfig.max_concurrency": "most probes in flight at once",
    "DaemonConfig.shutdown_grace": "on SIGTERM, how long in-flight probes and deliveries may finish",
    "DaemonConfig.traps": "run the SNMP trap receiver (needed by `snmp_trap` checks)",
    "DemoSipResponder.listen": "host:port to answer SIP on (UDP and TCP)",
    "DemoSipResponder.status": "status code sent to every request",
    "TrapListenerConfig.listen": "host:port (UDP) to receive traps and informs on",
    "TrapListenerConfig.communities": "v1/v2c communities accepted (secrets)",
    "TrapListenerConfig.v3_users": "SNMPv3 users accepted",
    "V3Credentials.user": "USM user name",
    "V3Credentials.auth_protocol": "authentication protocol (`none`: noAuthNoPriv)",
    "V3Credentials.auth_key": "authentication pass phrase (secret, 8+ characters)",
    "V3Credentials.priv_protocol": "privacy (encryption) protocol; needs authentication",
    "V3Credentials.priv_key": "privacy pass phrase (secret, 8+ characters)",
    "V3Credentials.context": "SNMP context name",
    # inventory
    "Customer.name": "display name",
    "Customer.partner": "the partner (reseller) serving the customer; shown on tickets",
    "Customer.support_plan": "key of a `support_plans` entry (none: 24x7, default targets)",
    "Customer.labels": "free labels (shown on tickets, usable by `group_by: label:NAME`)",
    "Site.name": "display name",
    "Site.customer": "key of a `customers` entry",
    "Site.timezone": "IANA time zone of the site",
    "Site.country": "ISO country code (shown on tickets)",
    "Site.address": "postal address (shown on tickets)",
    "Site.contacts": "people at the site to call about it (not the NOC on-call)",
    "Site.devices": "devices by key; checks name one with `device:`",
    "Site.active_hours": "support_hours calendar when the site is expected up (validated only)",
    "Site.labels": "free labels; `group_by: label:NAME` falls back to these",
    "Contact.name": "the contact's name",
    "Contact.phone": "phone number",
    "Contact.email": "e-mail address",
    "Contact.role": "role, e.g. office manager",
    "Device.kind": "what it is, e.g. pbx, router, ups",
    "Device.serial": "serial number (on tickets and pages)",
    "Device.model": "model (on tickets and pages)",
    "Device.firmware": "firmware version (on tickets)",
    "Device.country": "ISO country code where the device is",
    "Device.address": "where the device is, when not the site address",
    "SupportPlan.response": "time to respond per class",
    "SupportPlan.resolve": "time to resolve per class (none: no resolve target)",
    "SupportPlan.priority": "ticket priority per class",
    "ResponseTargets.critical": "target for critical (service down)",
    "ResponseTargets.degraded": "target for degraded",
    "ResponseTargets.low": "target for low (informational)",
    "PriorityMap.critical": "priority of a critical incident's ticket",
    "PriorityMap.degraded": "priority of a degraded incident's ticket",
    "PriorityMap.low": "priority of a low incident's ticket",
    # calendars
    "CalendarConfig.timezone": "IANA time zone the ranges are in",
    "CalendarConfig.weekly": "open ranges per weekday (`mon`…`sun`), `HH:MM-HH:MM`; may cross midnight",
    "CalendarConfig.holidays": "public-holiday sources (closed all day)",
    "CalendarConfig.closed_dates": "extra closed dates",
    "CalendarConfig.half_days": "dates with their own (shorter) open ranges",
    "HolidaySource.country": "ISO country code for the `holidays` package",
    "HolidaySource.subdivision": "state/region code, e.g. `NY`",
    "HalfDay.date": "the date",
    "HalfDay.hours": "open ranges on that date",
    # checks: common
    "CheckConfig.name": "unique; used in metrics, API, CLI (letters, digits, `_.:-`)",
    "CheckConfig.type": "the check type (one of the sections below)",
    "CheckConfig.target": "what to probe; its form depends on the type",
    "CheckConfig.site": "key of a `sites` entry (grouping, tickets, routing)",
    "CheckConfig.device": "key of a device at `site`",
    "CheckConfig.interval": "time between probes (at least 1s)",
    "CheckConfig.timeout": "probe deadline (at most `interval`)",
    "CheckConfig.retry_interval": "re-probe spacing while confirming a failure (default: interval/3)",
    "CheckConfig.recover_after": "consecutive successes before a hard failure recovers",
    "CheckConfig.on_failure": "severity of a failure instead of the type's own judgement",
    "CheckConfig.depends_on": "checks this one needs; while one is down this one is unreachable",
    "CheckConfig.labels": "free labels; `role: uplink` marks a customer uplink",
    "CheckConfig.active_hours": "support_hours calendar when the check is expected up (validated only)",
    "CheckConfig.enabled": "`false`: keep the check in the config but never run it",
    # http, tcp, tls_cert
    "checks.http.Config.target": "http:// or https:// URL",
    "checks.http.Config.method": "HTTP method",
    "checks.http.Config.expect_status": "status codes that count as up",
    "checks.http.Config.body_regex": "regular expression the body must match (searched)",
    "checks.http.Config.headers": "extra request headers (not secret)",
    "checks.http.Config.tls_verify": "verify the server certificate and name",
    "checks.http.Config.ca_file": "CA bundle (PEM) to verify with",
    "checks.http.Config.follow_redirects": "follow 3xx responses",
    "checks.http.Config.max_redirects": "most redirects followed",
    "checks.tcp.Config.target": "`host:port` or `[v6]:port`",
    "checks.tcp.Config.tls": "do a TLS handshake after connecting",
    "checks.tcp.Config.tls_verify": "verify the server certificate and name",
    "checks.tcp.Config.server_name": "TLS name (SNI and verification; default: target host)",
    "checks.tcp.Config.ca_file": "CA bundle (PEM) to verify with",
    "checks.tls_cert.Config.target": "`host:port` serving TLS",
    "checks.tls_cert.Config.server_name": "TLS name (SNI and verification; default: target host)",
    "checks.tls_cert.Config.ca_file": "CA bundle (PEM) to verify with",
    "checks.tls_cert.Config.tls_verify": "verify the chain and name (`false`: only read the expiry)",
    "checks.tls_cert.Config.degraded_days": "days to expiry at or below which it is degraded",
    "checks.tls_cert.Config.critical_days": "days to expiry at or below which it is critical",
    # snmp
    "checks.snmp.Config.target": "`host` or `host:port` (UDP, default port 161)",
    "checks.snmp.Config.version": "SNMP version",
    "checks.snmp.Config.community": "v2c community (secret); required for `2c`",
    "checks.snmp.Config.v3": "v3 user; required for `3`",
    "checks.snmp.Config.oids": "OIDs to read and how to judge them",
    "checks.snmp.Config.detect_restart": "read sysUpTime and report a restart when it goes back",
    "checks.snmp.Config.on_restart": "severity of a detected restart",
    "OidCondition.oid": "numeric OID, e.g. `1.3.6.1.2.1.33.1.2.4.0`",
    "OidCondition.equals": "value must equal this",
    "OidCondition.not_equals": "value must not equal this",
    "OidCondition.on_mismatch": "severity when `equals`/`not_equals` fails",
    "OidCondition.degraded_above": "numeric value above this: degraded",
    "OidCondition.critical_above": "numeric value above this: critical",
    "OidCondition.degraded_below": "numeric value below this: degraded",
    "OidCondition.critical_below": "numeric value below this: critical",
    # snmp_trap
    "checks.trap.Config.trap_oid": "snmpTrapOID (or v1 enterprise.0.specific) that fires the rule",
    "checks.trap.Config.varbinds": "conditions all of which the trap's varbinds must meet",
    "checks.trap.Config.severity": "severity of a firing trap",
    "checks.trap.Config.clear_oid": "trap OID that clears the rule",
    "checks.trap.Config.clear_varbinds": "conditions on the clearing trap",
    "VarbindCondition.oid": "varbind OID (also matches table instances below it)",
    "VarbindCondition.equals": "value must equal this",
    "VarbindCondition.not_equals": "value must not equal this",
    "VarbindCondition.above": "numeric value must be above this",
    "VarbindCondition.below": "numeric value must be below this",
    # heartbeat, alertmanager
    "checks.heartbeat.Config.period": "longest silence between heartbeats (at least 1s)",
    "checks.alertmanager.Config.matchers": "label matchers (`=`, `!=`, `=~`, `!~`), all must match",
    "checks.alertmanager.Config.severity_label": "alert label that carries the severity",
    "checks.alertmanager.Config.severity_map": "severity label value → nocd severity",
    "checks.alertmanager.Config.default_severity": "severity when the label is absent or unmapped",
    # dns, icmp
    "checks.dns.Config.target": "the name to query, e.g. `_sip._udp.example.com`",
    "checks.dns.Config.record_type": "record type to query",
    "checks.dns.Config.tcp": "query over TCP instead of UDP",
    "checks.icmp.Config.target": "host name or IP address to ping",
    "checks.icmp.Config.count": "echo requests per probe",
    "checks.icmp.Config.payload_size": "echo payload bytes",
    "checks.icmp.Config.critical_rtt": "average RTT above this: critical",
    # sip
    "SipCheckConfig.target": "SIP URI, e.g. `sip:pbx.example.com;transport=tcp` or `sips:…`",
    "SipCheckConfig.tls_verify": "verify the server certificate (sips:/transport=tls)",
    "SipCheckConfig.ca_file": "CA bundle (PEM) to verify with",
    "SipCheckConfig.key_file": "client private key (PEM) for `cert_file`",
    "SipCheckConfig.severity_by_failure": "failure class → severity, overriding the defaults",
    "checks.sip.options.Config.from_user": "user part of the From URI",
    "checks.sip.register.Config.username": "account user (AOR user part)",
    "checks.sip.register.Config.password": "account password (secret)",
    "checks.sip.register.Config.expires": "Expires asked for (the binding is removed after)",
    "checks.sip.registrations.Config.source": "registrar API kind",
    "checks.sip.registrations.Config.username": "API user (basic/digest auth)",
    "checks.sip.registrations.Config.password": "API password (secret)",
    "checks.sip.registrations.Config.tls_verify": "verify the API's certificate",
    "checks.sip.registrations.Config.ca_file": "CA bundle (PEM) to verify with",
    # incidents
    "IncidentsConfig.group_by": "one incident per `site`, `device`, `customer`, `check`, `label:NAME`",
    "IncidentsConfig.resolve_hold_down": "all members must stay up this long before the resolve",
    "IncidentsConfig.flapping": "flap detection",
    "IncidentsConfig.rules": "aggregate severity rules; the worst matching wins",
    "IncidentsConfig.uplink_severity": "severity when the cause is a check labelled `role: uplink`",
    "FlappingConfig.window": "number of recent results weighed",
    "AggregateRule.severity": "the incident's severity when the condition holds",
    "AggregateRule.any_failing": "selectors; holds when any selected check fails",
    "AggregateRule.all_failing": "selectors; holds when every selected check fails",
    "AggregateRule.of": "selectors of the checks `failing_ratio`/`missing_ratio` count",
    "AggregateRule.failing_ratio": "holds when this share of `of` fails",
    "AggregateRule.missing_ratio": "holds when this share of expected phones in `of` is missing",
    "MaintenanceWindow.name": "name shown on the timeline and dashboard",
    "MaintenanceWindow.match": "which checks it covers",
    "MaintenanceWindow.start": "start with a zone offset (one-off window)",
    "MaintenanceWindow.end": "end with a zone offset (one-off window)",
    "MaintenanceWindow.recurring": "a weekly window instead of start/end",
    "MaintenanceWindow.comment": "free text",
    "MaintenanceMatch.checks": "check names",
    "MaintenanceMatch.sites": "site keys",
    "MaintenanceMatch.customers": "customer keys",
    "MaintenanceMatch.labels": "labels the check must all have",
    "RecurringWindow.timezone": "IANA time zone of the ranges",
    "RecurringWindow.weekly": "ranges per weekday, `HH:MM-HH:MM`",
    # tickets
    "TicketsConfig.enabled": "`false`: no tickets at all, not even built-in",
    "TicketsConfig.sinks": "help-desk destinations by name (1-32 of `a-z0-9_-`)",
    "SinkConfig.type": "the sink type",
    "SinkConfig.enabled": "`false`: keep but send nothing",
    "SinkConfig.timeout": "per request",
    "nocd.tickets.webhook.Config.url": "URL each operation is POSTed to",
    "nocd.tickets.webhook.Config.secret": "HMAC-SHA256 key for X-Nocd-Signature (secret)",
    "nocd.tickets.webhook.Config.headers": "extra, non-secret headers",
    "nocd.tickets.mail.Config.host": "SMTP server",
    "nocd.tickets.mail.Config.port": "SMTP port",
    "nocd.tickets.mail.Config.security": "`starttls`, implicit `tls` (465) or `none`",
    "nocd.tickets.mail.Config.username": "SMTP AUTH user (with password)",
    "nocd.tickets.mail.Config.password": "SMTP AUTH password (secret)",
    "nocd.tickets.mail.Config.from_address": "From address",
    "nocd.tickets.mail.Config.to": "recipients (the help desk's intake address)",
    "nocd.tickets.mail.Config.cc": "copy recipients",
    "nocd.tickets.mail.Config.subject_prefix": "subject prefix",
    "nocd.tickets.jira.Config.base_url": "Jira site URL",
    "nocd.tickets.jira.Config.email": "account e-mail for basic auth",
    "nocd.tickets.jira.Config.api_token": "API token (secret)",
    "nocd.tickets.jira.Config.project": "project key, e.g. `NOC`",
    "nocd.tickets.jira.Config.issue_type": "issue type name",
    "nocd.tickets.jira.Config.labels": "labels added to every issue",
    "nocd.tickets.jira.Config.resolve_transition": "transition (or target status) on resolve",
    "nocd.tickets.jira.Config.close_transition": "transition when the RFO is delivered (none: skip)",
    # paging
    "PagingConfig.enabled": "`false`: never page",
    "PagingConfig.provider": "who sends pages (`dry_run` only logs them)",
    "PagingConfig.people": "people by key (lowercase `a-z0-9_-`)",
    "PagingConfig.schedules": "on-call schedules by key",
    "PagingConfig.escalation_policies": "escalation policies by key",
    "PagingConfig.routing": "which policy and hours apply to a customer or site",
    "PagingConfig.rate_limits": "per-recipient caps",
    "TwilioProvider.type": "`twilio`",
    "TwilioProvider.account_sid": "account SID (secret)",
    "TwilioProvider.auth_token": "auth token (secret; also checks webhook signatures)",
    "TwilioProvider.from_number": "E.164 number calls and SMS come from",
    "TwilioProvider.machine_detection": "ask Twilio for answering-machine detection",
    "TwilioProvider.timeout": "per API request",
    "DryRunProvider.type": "`dry_run`: pages go to the log and timeline, marked DRY-RUN",
    "Person.name": "display name",
    "Person.phone": "E.164 number for voice (and SMS unless `sms`)",
    "Schedule.timezone": "IANA zone of handoffs and `restrict` ranges",
    "Schedule.layers": "rotations; a later layer wins while it applies",
    "Schedule.overrides": "fixed shifts that win over every layer",
    "Schedule.ical_refresh": "how often `ical_url` is fetched (at least 1m)",
    "Layer.name": "layer name",
    "Layer.rotation": "shift length: a day, a week or `length`",
    "Layer.handoff": "local time shifts change (DST does not move it)",
    "Layer.participants": "person keys, in rotation order",
    "Override.start": "start with a zone offset",
    "Override.end": "end with a zone offset",
    "Override.person": "person key on call meanwhile",
    "EscalationPolicy.steps": "steps in order",
    "EscalationPolicy.repeat": "times all steps are repeated after the first run",
    "EscalationPolicy.fallback": "paged once after the last repeat went unacknowledged",
    "Step.people": "person keys paged",
    "Step.schedules": "schedule keys whose on-call person is paged",
    "Step.channels": "`voice` and/or `sms`",
    "Step.wait": "time for an ack before the next step",
    "Fallback.people": "person keys paged",
    "Fallback.channels": "`voice` and/or `sms`",
    "RoutingConfig.default": "route for everyone",
    "RoutingConfig.customers": "overrides by customer key",
    "RoutingConfig.sites": "overrides by site key (win over customer)",
    "Route.support_hours": "support_hours calendar name or `24x7`",
    "Route.escalation_policy": "escalation policy key",
    "Route.digest_to": "person keys that get the digest SMS",
    "RateLimits.window": "sliding window the caps count in",
    "RateLimits.voice": "calls per person per window",
    "RateLimits.sms": "SMS per person per window",
    "DigestEmail.host": "SMTP server",
    "DigestEmail.port": "SMTP port",
    "DigestEmail.security": "`starttls`, implicit `tls` (465) or `none`",
    "DigestEmail.ca_file": "CA bundle (PEM) to verify the server with",
    "DigestEmail.username": "SMTP AUTH user (with password)",
    "DigestEmail.password": "SMTP AUTH password (secret)",
    "DigestEmail.from_address": "From address",
    "DigestEmail.to": "recipients",
    "DigestEmail.timeout": "per delivery",
    # api
    "ApiConfig.tokens": "bearer tokens",
    "ApiToken.name": "name shown in logs and the timeline",
    "ApiToken.token": "the token (secret reference)",
    "ApiToken.token_sha256": "or its SHA-256 hex digest (nothing secret in the config)",
    "ApiToken.scopes": "`read` and/or `write` (ack, resolve, notes, silences)",
}


def label(cls: type) -> str:
    """The MEANINGS prefix of a model class."""
    return f"{cls.__module__}.{cls.__name__}" if cls.__name__ == "Config" else cls.__name__


def declaring(cls: type[BaseModel], field: str) -> type:
    """The class in the MRO that declares `field` (so shared keys are described once)."""
    for base in cls.__mro__:
        if field in inspect.get_annotations(base):
            return base
    return cls


def meaning(cls: type[BaseModel], field: str, info: FieldInfo) -> str:
    """The key's meaning, or an empty string when it has none."""
    if field == "type" and get_origin(info.annotation) is Literal:
        return f"`{get_args(info.annotation)[0]}` selects this type"
    return info.description or MEANINGS.get(f"{label(declaring(cls, field))}.{field}", "")


def _models_in(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    out: list[type[BaseModel]] = []
    for arg in get_args(ann):
        out += _models_in(arg)
    return out


def type_key(cls: type[BaseModel]) -> str | None:
    """The `type:` value that selects a plugin model (check, sink, provider), if it has one."""
    field = cls.model_fields.get("type")
    if field is not None and get_origin(field.annotation) is Literal:
        return str(get_args(field.annotation)[0])
    return None


def anchor(cls: type) -> str:
    """The HTML anchor id of a model's section."""
    return re.sub(r"[^a-z0-9]+", "-", label(cls).lower()).strip("-")


def type_text(ann: Any) -> str:
    """A readable type for the table."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        for meta in args[1:]:
            func = getattr(meta, "func", None)
            if func is parse_duration:
                return "duration"
            if func is resolve_secret:
                return "secret"
            if func is inventory._target:
                return "duration or `next_business_day`"
        return type_text(args[0])
    if origin in (Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        return " or ".join(type_text(a) for a in parts)
    if origin is Literal and len(args) == 1:
        return f"`{args[0]}`"
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        return f"list of {type_text(args[0])}"
    if origin is frozenset:
        return f"set of {type_text(args[0])}"
    if origin is dict:
        return f"map of {type_text(args[0])} → {type_text(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return f"[{type_key(ann) or ann.__name__}](#{anchor(ann)})"
    simple = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        date: "date",
        datetime: "date-time",
        Severity: "severity",
        FailureClass: "failure class",
    }
    return simple.get(ann, getattr(ann, "__name__", str(ann)))


def full_type(info: FieldInfo) -> Any:
    """The field's type with the validators pydantic moved into its metadata put back."""
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


def _bounds(info: FieldInfo) -> str:
    duration = any(getattr(m, "func", None) is parse_duration for m in info.metadata)
    out = []
    for m in info.metadata:
        for cls, attr, sym in (
            (at.Ge, "ge", "≥"),
            (at.Gt, "gt", ">"),
            (at.Le, "le", "≤"),
            (at.Lt, "lt", "<"),
        ):
            if isinstance(m, cls):
                bound = getattr(m, attr)
                out.append(f"{sym} {format_duration(bound) if duration else bound}")
        if isinstance(m, at.MinLen) and m.min_length:
            out.append(f"at least {m.min_length}")
    return f" ({', '.join(out)})" if out else ""


def _flow(v: Any) -> str:
    """A JSON value written as compact YAML flow."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./@+-]*|\d+[a-z]+[0-9a-z]*", v)
        return v if plain and v not in ("true", "false", "null") else json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"


def default_text(info: FieldInfo) -> str:
    """The default as it would be written in YAML, or **required**."""
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        changed = {
            k: getattr(value, k)
            for k, f in type(value).model_fields.items()
            if f.is_required() or getattr(value, k) != f.get_default(call_default_factory=True)
        }
        if not changed:
            return "(defaults below)"
        return f"`{_flow(value.model_dump(mode='json', include=set(changed)))}`"
    adapter: TypeAdapter[Any] = TypeAdapter(full_type(info))
    dumped = adapter.dump_python(value, mode="json")
    if isinstance(dumped, list) and isinstance(value, frozenset):
        dumped = sorted(dumped)
    return f"`{_flow(dumped)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class Writer:
    """Accumulates the document; each model is described once and linked elsewhere."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.done: set[type] = set()
        self.missing: list[str] = []

    def table(self, cls: type[BaseModel], fields: list[str]) -> None:
        """A key/type/default/meaning table of `fields` of `cls`."""
        self.lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name in fields:
            info = cls.model_fields[name]
            what = meaning(cls, name, info)
            if not what:
                self.missing.append(f"{label(declaring(cls, name))}.{name}")
            ann = full_type(info)
            self.lines.append(
                f"| `{name}` | {_cell(type_text(ann) + _bounds(info))} | "
                f"{_cell(default_text(info))} | {_cell(what)} |"
            )
        self.lines.append("")

    def model(self, cls: type[BaseModel], path: str, level: int, skip: type | None = None) -> None:
        """A section for `cls` at `path` (fields declared on `skip` are left out)."""
        if cls in self.done:
            return
        self.done.add(cls)
        fields = [
            f
            for f in cls.model_fields
            if skip is None or declaring(cls, f) is not skip or f == "type"
        ]
        key = type_key(cls)
        heading = f"`{path}` type: `{key}`" if key else f"`{path}`"
        self.lines += [f'<a id="{anchor(cls)}"></a>', "", f"{'#' * level} {heading}", ""]
        doc = inspect.cleandoc(cls.__doc__ or "")
        if doc:
            self.lines += [doc, ""]
        if getattr(cls, "passive", False):
            self.lines += ["Passive: fed from outside, never probed.", ""]
        self.table(cls, fields)
        for name in fields:
            self.children(cls.model_fields[name], f"{path}.{name}", level + 1)

    def children(self, info: FieldInfo, path: str, level: int) -> None:
        """Sections for the models a field holds."""
        for sub in _models_in(info.annotation):
            if not issubclass(sub, CheckConfig | SinkConfig):  # these get their own sections
                self.model(sub, path + _suffix(info.annotation), min(level, 4))


def _suffix(ann: Any) -> str:
    """How a path continues into a field's models: `.<name>` for maps, `[]` for lists."""
    return {dict: ".<name>", tuple: "[]"}.get(get_origin(ann), "")


def sections(w: Writer) -> None:
    """Write every section in the order of the top-level model."""
    w.lines += ['<a id="top-level"></a>', "", "## Top level", ""]
    w.table(Config, list(Config.model_fields))
    for name, info in Config.model_fields.items():
        if name == "checks":
            checks(w)
        elif name == "tickets":
            tickets(w)
        else:
            for m in _models_in(info.annotation):
                w.model(m, name + _suffix(info.annotation), 2)


def checks(w: Writer) -> None:
    """Common check fields, then one section per registered check type."""
    w.lines += [
        f'<a id="{anchor(CheckConfig)}"></a>',
        "",
        "## `checks[]`",
        "",
        "Fields every check has; the check types below add their own.",
        "",
    ]
    w.done.add(CheckConfig)
    w.table(CheckConfig, list(CheckConfig.model_fields))
    for _, ct in sorted(check_types().items()):
        w.model(ct.config, "checks[]", 3, skip=CheckConfig)


def tickets(w: Writer) -> None:
    """The tickets section, common sink fields, then one section per sink type."""
    from nocd.tickets.config import TicketsConfig

    w.model(TicketsConfig, "tickets", 2)
    w.lines += [
        f'<a id="{anchor(SinkConfig)}"></a>',
        "",
        "### `tickets.sinks.<name>`",
        "",
        "Fields every sink has; the sink types below add their own.",
        "",
    ]
    w.done.add(SinkConfig)
    w.table(SinkConfig, list(SinkConfig.model_fields))
    for _, st in sorted(sink_types().items()):
        w.model(st.config, "tickets.sinks.<name>", 4, skip=SinkConfig)


HEADER = """# nocd configuration reference

<!-- Generated by scripts/gen_config_docs.py from the pydantic models; do not edit by hand.
     Run `.venv/bin/python scripts/gen_config_docs.py` after changing a config model. -->

Every key nocd accepts, with its type, default and meaning. `config/nocd.example.yaml`
shows them all in use with comments; `nocd check-config -c FILE` validates a file.

- YAML is read as YAML 1.2: `NO` stays a string, `17:30` stays a time. Unknown keys are
  errors, and every error is reported with its file, line and key path.
- **duration**: `250ms`, `30s`, `5m`, `1h30m`, `2d`, `1w` (or a number of seconds).
- **secret**: `${{ENV_VAR}}` or `file:/path`; a relative `file:` path is looked up in
  systemd's `$CREDENTIALS_DIRECTORY`. A secret written in clear is refused.
- **severity**: {severities}.
- **failure class**: {failures}.
- **selector** (incident rules): a check name, `type:TYPE`, `label:KEY=VALUE`, or `*`.
- A default of — means unset.
"""


def render() -> tuple[str, list[str]]:
    """The document and the keys that have no meaning."""
    w = Writer()
    sections(w)
    header = HEADER.format(
        severities=", ".join(f"`{s.value}`" for s in Severity),
        failures=", ".join(f"`{f.value}`" for f in FailureClass if f is not FailureClass.NONE),
    )
    text = header + "\n" + "\n".join(w.lines).rstrip() + "\n"
    return text, w.missing


def main(argv: list[str] | None = None) -> int:
    """Write docs/config.md, or with --check, exit 1 when it is stale or a key is undocumented."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    text, missing = render()
    if missing:
        print(
            "keys without a meaning (add a Field description or a MEANINGS entry):", file=sys.stderr
        )
        for key in missing:
            print(f"  {key}", file=sys.stderr)
        return 1
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
