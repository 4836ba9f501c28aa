"""iCal shift feeds: fetch schedules' `ical_url` (or read `ical_file`), keeping the last good copy.

Contract for the lead:
    feeds = IcalFeeds()
    errors = await feeds.refresh(paging_cfg, now)   # at start, then every second or so:
                                                     # each schedule refreshes per ical_refresh
    pager.configure(..., ical=feeds.shifts)          # or Pager.set_ical(feeds.shifts)
A feed that fails (HTTP error, timeout, not iCal) keeps its last good shifts and is reported
in `errors`; the schedule's layers and overrides answer meanwhile.
"""

from __future__ import annotations

import aiohttp
import structlog

from paging.config import PagingConfig, Person
from paging.schedules import IcalShifts, load_ical, parse_ical

log = structlog.get_logger(__name__)

MAX_FEED_BYTES = 5_000_000  # an on-call feed is small; refuse to buffer something huge


async def fetch_ical(
    url: str, people: dict[str, Person], session: aiohttp.ClientSession, limit: float = 10.0
) -> IcalShifts:
    """GET an iCal feed and parse it; raises ValueError with a clear reason on failure."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=limit)) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} from {url}")
            body = await resp.content.read(MAX_FEED_BYTES + 1)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ValueError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    if len(body) > MAX_FEED_BYTES:
        raise ValueError(f"{url}: feed larger than {MAX_FEED_BYTES} bytes")
    return parse_ical(body, people)


class IcalFeeds:
    """The current iCal shifts of every schedule that has a file or a feed."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._own_session = session is None
        self.shifts: dict[str, IcalShifts] = {}
        self._next: dict[str, float] = {}

    async def refresh(self, paging: PagingConfig, now: float, force: bool = False) -> list[str]:
        """Reload the feeds that are due (all when `force`); returns one error line per failure."""
        errors: list[str] = []
        people = dict(paging.people)
        for name in list(self.shifts):
            if name not in paging.schedules:  # schedule removed by a reload
                del self.shifts[name]
        for name, sched in paging.schedules.items():
            if sched.ical_file is None and sched.ical_url is None:
                self.shifts.pop(name, None)
                continue
            if not force and self._next.get(name, 0.0) > now:
                continue
            self._next[name] = now + sched.ical_refresh
            try:
                if sched.ical_file is not None:
                    self.shifts[name] = load_ical(sched.ical_file, people)
                else:
                    assert sched.ical_url is not None
                    self.shifts[name] = await fetch_ical(sched.ical_url, people, self._http())
            except (ValueError, OSError) as exc:
                errors.append(f"schedule {name}: {exc}")
                log.error(
                    "on-call iCal refresh failed; keeping the last good copy",
                    schedule=name,
                    error=str(exc),
                )
        return errors

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if this object opened it."""
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None
