"""The one registry of check types, keyed by the config's `type:`.

Adding a check type means adding its module name to `_MODULES`; nothing else registers it.
"""

from __future__ import annotations

import importlib
from functools import cache

from checks.base import CheckType

_MODULES: tuple[str, ...] = (
    "checks.http",
    "checks.tcp",
    "checks.tls_cert",
    "checks.snmp",
    "checks.trap",
    "checks.heartbeat",
    "checks.alertmanager",
    "checks.dns",
    "checks.icmp",
    "checks.sip.options",
    "checks.sip.register",
    "checks.sip.registrations",
)


@cache
def check_types() -> dict[str, CheckType]:
    """All known check types by their `type:` key."""
    out: dict[str, CheckType] = {}
    for name in _MODULES:
        mod = importlib.import_module(name)
        cfg = mod.Config
        key = cfg.model_fields["type"].annotation.__args__[0]
        if key in out:
            raise RuntimeError(f"check type {key!r} registered twice")
        out[key] = CheckType(key, cfg, mod.probe, mod.evaluate, getattr(mod, "start", None))
    return out


def get(type_key: str) -> CheckType:
    """The check type for `type_key`; KeyError names the known ones."""
    types = check_types()
    try:
        return types[type_key]
    except KeyError:
        raise KeyError(
            f"unknown check type {type_key!r}; known: {', '.join(sorted(types))}"
        ) from None
