"""Config of tickets: the sinks (built from the sink registry) and the RFO due times.

The built-in ticket store is always on; `sinks` adds help-desk destinations by name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import BeforeValidator, Field, field_validator

from nocd.duration import Duration
from nocd.inventory import Priority, Strict
from nocd.tickets.registry import sink_types
from nocd.tickets.sink import SinkConfig

_SINK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _known_type(v: Any) -> Any:
    """Name the sink type problem plainly (the union's own error speaks of tags)."""
    known = ", ".join(sink_types())
    if isinstance(v, dict):
        if "type" not in v:
            raise ValueError(f"a sink needs a type: one of {known}")
        if v["type"] not in sink_types():
            raise ValueError(f"unknown sink type {v['type']!r}; known types: {known}")
    return v


def _any_sink() -> Any:
    models = tuple(t.config for t in sink_types().values())
    tag = Field(discriminator="type")
    return Annotated[Union[models], tag, BeforeValidator(_known_type)]  # noqa: UP007


if TYPE_CHECKING:
    AnySink = SinkConfig
else:
    AnySink = _any_sink()


class TicketsConfig(Strict):
    """Ticket delivery settings."""

    enabled: bool = True
    sinks: dict[str, AnySink] = Field(default_factory=dict)
    rfo_due: dict[Priority, Duration] = Field(
        default_factory=lambda: {"P1": 24 * 3600.0, "P2": 96 * 3600.0},  # type: ignore[arg-type]
        description="how long after the resolve an RFO is owed, per priority",
    )

    @field_validator("sinks")
    @classmethod
    def _names(cls, v: dict[str, SinkConfig]) -> dict[str, SinkConfig]:
        for name in v:
            if not _SINK_NAME.match(name):
                raise ValueError(
                    f"sink name {name!r}: use 1-32 lowercase letters, digits, '_' or '-'"
                )
        return v
