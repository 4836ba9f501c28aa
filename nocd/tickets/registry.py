"""The one registry of ticket sinks, keyed by the config's `type:`.

Adding a sink means adding its module (with `Config` and `build(cfg) -> Sink`) to `_MODULES`;
the config's discriminated union and the delivery code both read this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from nocd.tickets.sink import Sink, SinkConfig

_MODULES: tuple[str, ...] = (
    "nocd.tickets.webhook",
    "nocd.tickets.mail",
    "nocd.tickets.jira",
)


@dataclass(frozen=True, slots=True)
class SinkType:
    """One registered sink type: its config model and its factory."""

    key: str
    config: type[SinkConfig]
    build: Callable[[Any], Sink]


@cache
def sink_types() -> dict[str, SinkType]:
    """All known sink types by their `type:` key."""
    out: dict[str, SinkType] = {}
    for name in _MODULES:
        mod = importlib.import_module(name)
        cfg = mod.Config
        key = cfg.model_fields["type"].annotation.__args__[0]
        if key in out:
            raise RuntimeError(f"sink type {key!r} registered twice")
        out[key] = SinkType(key, cfg, mod.build)
    return out


def build(cfg: SinkConfig) -> Sink:
    """The sink for a validated sink config."""
    return sink_types()[cfg.type].build(cfg)
