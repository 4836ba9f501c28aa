"""Outbound heartbeat to an external dead man's switch (healthchecks.io style).

systemd's watchdog restarts a hung nocd, but nothing inside a dead host, a crash-looping
unit or a cut network can say so. With `daemon.heartbeat_url` set, nocd requests that URL
every `daemon.heartbeat_interval` while it is healthy (scheduler alive, store writable);
the external service alerts when the pings stop. A ping is never sent while unhealthy, so
a daemon that runs but no longer monitors is reported as down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import structlog

from nocd.config import DaemonConfig

log = structlog.get_logger(__name__)

IDLE = 5.0  # seconds between looks at the config while no heartbeat URL is set


def where(url: str) -> str:
    """scheme://host of a ping URL: its path often holds the check's secret token."""
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname or ''}{f':{u.port}' if u.port else ''}"


class Heartbeat:
    """Pings the configured URL while `healthy()` holds; reads the config on every round."""

    def __init__(self, settings: Callable[[], DaemonConfig], healthy: Callable[[], bool]) -> None:
        self._settings = settings
        self._healthy = healthy
        self.sent = 0
        self.failed = 0
        self.skipped = 0
        self._failing = False

    async def run(self) -> None:
        """Ping forever (a daemon task); never raises except on cancellation."""
        async with aiohttp.ClientSession() as http:
            while True:
                cfg = self._settings()
                url, interval = cfg.heartbeat_url, cfg.heartbeat_interval
                if url is None:
                    await asyncio.sleep(IDLE)
                    continue
                if self._healthy():
                    await self.ping(http, url, timeout=min(10.0, max(1.0, interval)))
                else:
                    self.skipped += 1
                await asyncio.sleep(interval)

    async def ping(self, http: aiohttp.ClientSession, url: str, timeout: float) -> bool:  # noqa: ASYNC109 - a per-request limit, not a cancel scope
        """One GET to `url`; True on a 2xx answer. Failures are logged once per outage."""
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                why = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, why = False, type(exc).__name__
        if ok:
            self.sent += 1
            if self._failing:
                log.info("heartbeat delivered again", to=where(url))
            self._failing = False
            return True
        self.failed += 1
        if not self._failing:
            # One line per outage of the receiver, not one per interval.
            log.warning("heartbeat not delivered; will keep trying", to=where(url), error=why)
        self._failing = True
        return False
