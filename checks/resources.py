"""Shared per-event-loop resources of check types (HTTP session, SIP socket, SNMP engine).

Probes are plain functions of (cfg, deadline); what they share lives here, created lazily
per running loop and closed once by the daemon at shutdown.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_CLOSERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, Callable[[], Awaitable[None]]]
] = weakref.WeakKeyDictionary()


def shared(key: str, factory: Callable[[], T], closer: Callable[[T], Awaitable[None]]) -> T:
    """Return the loop's resource `key`, creating it with `factory` on first use."""
    loop = asyncio.get_running_loop()
    items = _BY_LOOP.setdefault(loop, {})
    if key not in items:
        value = factory()
        items[key] = value

        async def _close() -> None:
            await closer(value)

        _CLOSERS.setdefault(loop, {})[key] = _close
    return items[key]  # type: ignore[no-any-return]


async def close_all() -> None:
    """Close every shared resource of the running loop (daemon shutdown, test teardown)."""
    loop = asyncio.get_running_loop()
    closers = _CLOSERS.pop(loop, {})
    _BY_LOOP.pop(loop, None)
    for close in closers.values():
        try:
            await close()
        except Exception:  # noqa: BLE001 - shutdown must close the rest regardless
            pass
