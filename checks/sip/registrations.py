"""`sip_registrations` check: how many of a site's phones the registrar sees registered now.

Sources: Kamailio's `ul.dump` over JSON-RPC (jsonrpcs + xhttp) and Asterisk ARI
`GET /ari/endpoints` (an endpoint is "online" while a contact is registered/reachable).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator, model_validator

from checks.base import CheckConfig, time_left
from checks.resources import shared
from checks.sip.common import classify, default_severity
from nocd.model import FailureClass, Observation, Severity, Verdict
from nocd.secrets import Secret

MAX_REPLY = 32 << 20  # a registrar with 100k bindings answers ul.dump with tens of MB


class Config(CheckConfig):
    """Config of a `sip_registrations` check: one site's expected phones on one registrar."""

    type: Literal["sip_registrations"]
    target: str = Field(description="Kamailio JSON-RPC URL or Asterisk ARI base URL")
    source: Literal["kamailio", "asterisk_ari"] = "kamailio"
    expected: tuple[str, ...] = Field(description="the site's AORs (user@domain or user)")
    username: str | None = None
    password: Secret | None = None
    table: str = Field("location", description="Kamailio usrloc table")
    tls_verify: bool = True
    ca_file: str | None = None
    degraded_missing: int = Field(1, ge=1, description="this many missing or more: degraded")
    critical_missing_ratio: float = Field(0.5, gt=0, le=1, description="this share: critical")

    @field_validator("target")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("target must be the registrar's http:// or https:// API URL")
        if "@" in v.split("/", 3)[2]:
            raise ValueError("no credentials in the URL: use username and password (a secret)")
        return v.rstrip("/")

    @field_validator("expected")
    @classmethod
    def _expected(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("list at least one expected AOR")
        if len(set(v)) != len(v):
            raise ValueError("expected AORs must be unique")
        return v

    @model_validator(mode="after")
    def _auth(self) -> Config:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


def normalize_aor(aor: str) -> str:
    """`sip:Alice@Example.COM;x` → `Alice@example.com` (the host part is case-insensitive)."""
    text = aor.strip().strip("<>")
    for prefix in ("sips:", "sip:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.split(";", 1)[0].split(">", 1)[0]
    user, at, host = text.rpartition("@")
    return f"{user}@{host.lower()}" if at else text


def find_missing(expected: Iterable[str], registered: Iterable[str]) -> list[str]:
    """Expected AORs absent from `registered`; a side without a domain matches on user."""
    full = {normalize_aor(a) for a in registered}
    users = {a.split("@", 1)[0] for a in full}
    missing = []
    for aor in expected:
        norm = normalize_aor(aor)
        if "@" in norm and norm in full:
            continue
        user = norm.split("@", 1)[0]
        if user in full or ("@" not in norm and user in users):
            continue
        if "@" in norm and any("@" not in r and r == user for r in full):
            continue
        missing.append(aor)
    return missing


class _Reply(Exception):
    """The registrar's API answered, but not with what we asked for."""


class _Auth(Exception):
    """The registrar's API rejected our credentials."""


def _kamailio_aors(result: Any, table: str) -> list[str]:
    """AORs with at least one live contact from a `ul.dump` result."""
    out = []
    for dom in result.get("Domains", []):
        domain = dom.get("Domain", {})
        if domain.get("Domain") != table:
            continue
        for entry in domain.get("AoRs", []):
            info = entry.get("Info", {})
            contacts = info.get("Contacts", [])
            if any(_live(c.get("Contact", {})) for c in contacts):
                out.append(str(info.get("AoR", "")))
    return out


def _live(contact: dict[str, Any]) -> bool:
    expires = contact.get("Expires")
    return expires == "permanent" or (isinstance(expires, int) and expires > 0)


def _ari_endpoints(result: Any) -> list[str]:
    """`technology/resource` and `resource` of every online ARI endpoint."""
    out = []
    for ep in result:
        if ep.get("state") == "online":
            resource = str(ep.get("resource", ""))
            out += [resource, f"{ep.get('technology', '')}/{resource}"]
    return out


@lru_cache(maxsize=32)
def _ssl(verify: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    if not verify:
        return False
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def _session() -> aiohttp.ClientSession:
    async def close(s: aiohttp.ClientSession) -> None:
        await s.close()

    return shared("sip.registrations.http", aiohttp.ClientSession, close)


async def _fetch(cfg: Config, deadline: float) -> list[str]:
    headers = {}
    if cfg.username is not None and cfg.password is not None:
        pair = f"{cfg.username}:{cfg.password.get_secret_value()}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    kwargs: dict[str, Any] = {"headers": headers, "ssl": _ssl(cfg.tls_verify, cfg.ca_file)}
    async with asyncio.timeout(time_left(deadline)):
        if cfg.source == "kamailio":
            body = {"jsonrpc": "2.0", "method": "ul.dump", "id": 1}
            async with _session().post(cfg.target, json=body, **kwargs) as resp:
                data = await _json(resp)
            if not isinstance(data, dict) or "result" not in data:
                error = data.get("error") if isinstance(data, dict) else data
                raise _Reply(f"JSON-RPC error: {str(error)[:200]}")
            return _kamailio_aors(data["result"], cfg.table)
        async with _session().get(cfg.target + "/endpoints", **kwargs) as resp:
            data = await _json(resp)
        if not isinstance(data, list):
            raise _Reply("ARI /endpoints did not return a list")
        return _ari_endpoints(data)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    if resp.status in (401, 403):
        raise _Auth(f"registrar API refused our credentials (HTTP {resp.status})")
    if resp.status != 200:
        raise _Reply(f"registrar API answered HTTP {resp.status}")
    raw = await resp.content.read(MAX_REPLY)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _Reply(f"registrar API sent invalid JSON: {exc}") from None


async def probe(cfg: Config, deadline: float) -> Observation:
    """Read the registrar's bindings and compare with the expected AORs; never raises."""
    start = time.perf_counter()
    try:
        registered = await _fetch(cfg, deadline)
    except asyncio.CancelledError:
        raise
    except _Auth as exc:
        return Observation.failed(FailureClass.AUTH, str(exc), time.perf_counter() - start)
    except (_Reply, AttributeError, TypeError) as exc:
        return Observation.failed(
            FailureClass.PROTOCOL, f"unexpected registrar reply: {exc}", time.perf_counter() - start
        )
    except aiohttp.ClientConnectorError as exc:
        fc, detail = classify(exc.os_error)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a probe never raises
        fc, detail = classify(exc)
        return Observation.failed(fc, detail, time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    missing = find_missing(cfg.expected, registered)
    n = len(cfg.expected)
    values = {"expected": n, "registered": n - len(missing), "missing": missing}
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        detail = f"{n - len(missing)} of {n} phones registered; missing: {shown}"
        return Observation.failed(FailureClass.MISSING, detail, elapsed, **values)
    return Observation.success(f"all {n} phones registered", elapsed, **values)


async def probe_verbose(cfg: Config, deadline: float) -> tuple[Observation, list[str]]:
    """probe() plus a short transcript (source, URL, counts; never credentials)."""
    obs = await probe(cfg, deadline)
    lines = [
        f"source {cfg.source} at {cfg.target} ({'with' if cfg.username else 'without'} auth)",
        f"answered in {obs.duration_s * 1000:.1f} ms: {obs.detail}",
    ]
    if "expected" in obs.values:
        lines.append(f"expected {obs.values['expected']}, registered {obs.values['registered']}")
        lines.extend(f"missing: {aor}" for aor in obs.values["missing"])
    return obs, lines


def evaluate(obs: Observation, cfg: Config) -> Verdict:
    """All or >= critical_missing_ratio missing: critical; >= degraded_missing: degraded."""
    if obs.failure is not FailureClass.MISSING:
        if obs.ok:
            return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
        return Verdict(cfg.on_failure or default_severity(obs.failure), obs.failure, obs.detail)
    expected = int(obs.values.get("expected", 0))
    missing = len(obs.values.get("missing", ()))
    if expected and (missing == expected or missing / expected >= cfg.critical_missing_ratio):
        return Verdict(Severity.CRITICAL, FailureClass.MISSING, obs.detail)
    if missing >= cfg.degraded_missing:
        return Verdict(Severity.DEGRADED, FailureClass.MISSING, obs.detail)
    return Verdict(Severity.OK, FailureClass.NONE, obs.detail)
