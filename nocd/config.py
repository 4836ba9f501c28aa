"""The top-level config model: fixed sections (see DESIGN.md), checks from the registry."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, ModelWrapValidatorHandler, field_validator, model_validator

from checks.base import CheckConfig
from checks.registry import check_types
from nocd.api_config import ApiConfig
from nocd.calendar_config import CalendarConfig
from nocd.compact import pooling, prepare
from nocd.duration import Duration
from nocd.incidents.config import IncidentsConfig, MaintenanceWindow
from nocd.intake.traps import TrapListenerConfig
from nocd.inventory import Customer, Site, Strict, SupportPlan
from nocd.tickets.config import TicketsConfig
from paging.config import PagingConfig


def _listen(v: str) -> str:
    m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})", v)
    if not m or int(m.group(2)) > 65535:
        raise ValueError("listen must be host:port, e.g. 127.0.0.1:9469")
    return v


class DemoSipResponder(Strict):
    """A built-in SIP responder (UDP and TCP on one port) so the demo has a PBX to probe."""

    listen: str = "127.0.0.1:5062"
    status: int = Field(200, ge=200, le=699)

    @field_validator("listen")
    @classmethod
    def _listen_ok(cls, v: str) -> str:
        return _listen(v)


class DaemonConfig(Strict):
    """Process-level settings."""

    listen: str = "127.0.0.1:9469"
    public_url: str | None = None
    state_path: Path = Path("nocd.db")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    max_concurrency: int = Field(1000, ge=1, le=100_000)
    shutdown_grace: Duration = 10.0
    tick: Duration = Field(
        0.02,
        description="scheduler tick; due probes are dispatched per tick (a probe starts at most"
        " one tick late; shorter ticks wake the loop more often for no gain)",
    )
    traps: TrapListenerConfig | None = None
    sip_responder: DemoSipResponder | None = Field(
        None, description="demo/lab only: answer SIP OPTIONS/REGISTER on this address"
    )
    heartbeat_url: str | None = Field(
        None, description="a dead man's switch (e.g. healthchecks.io) pinged while healthy"
    )
    heartbeat_interval: Duration = Field(60.0, gt=0, description="seconds between heartbeats")

    @field_validator("listen")
    @classmethod
    def _listen_ok(cls, v: str) -> str:
        return _listen(v)

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("public_url must be an http(s):// URL")
        return v.rstrip("/") if v else v

    @field_validator("heartbeat_url")
    @classmethod
    def _heartbeat(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("heartbeat_url must be an http(s):// URL")
        return v


def _any_check() -> Any:
    models = tuple(t.config for t in check_types().values())
    prepare(models)  # before any check is validated (see nocd/compact.py)
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


if TYPE_CHECKING:
    AnyCheck = CheckConfig
else:
    AnyCheck = _any_check()


class Config(Strict):
    """The whole validated, immutable configuration."""

    daemon: DaemonConfig = DaemonConfig()
    customers: dict[str, Customer] = Field(default_factory=dict)
    sites: dict[str, Site] = Field(default_factory=dict)
    support_plans: dict[str, SupportPlan] = Field(default_factory=dict)
    support_hours: dict[str, CalendarConfig] = Field(default_factory=dict)
    checks: tuple[AnyCheck, ...] = ()
    incidents: IncidentsConfig = IncidentsConfig()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    tickets: TicketsConfig = TicketsConfig()
    paging: PagingConfig = PagingConfig()
    api: ApiConfig = ApiConfig()

    @model_validator(mode="wrap")
    @classmethod
    def _compact_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Config]) -> Config:
        # Each check compacts itself once validated (CheckConfig), sharing equal values
        # with the checks before it: ~0.4 instead of ~1.9 KiB per check, and no pile of
        # freed dicts (bench/bench_memory.py); equality and dumps are unchanged.
        with pooling():
            return handler(data)

    @cached_property
    def checks_by_name(self) -> dict[str, CheckConfig]:
        """Checks indexed by name (built once; the config is immutable)."""
        return {c.name: c for c in self.checks}

    def check(self, name: str) -> CheckConfig:
        """The check named `name` (KeyError when unknown)."""
        return self.checks_by_name[name]
