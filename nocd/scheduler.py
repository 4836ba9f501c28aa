"""The paced scheduler: a heap of due times, dispatched per tick under a concurrency cap.

Why a heap and not one sleeping task per check: 50,000 sleeping tasks cost ~2 KiB each and
their wake-ups are not spread; a single heap keeps every check's runs evenly apart, lets
start-up and reload be paced (first runs spread over the interval by a stable hash of the
name), and dispatches all due probes in one pass per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
from collections.abc import Callable, Sequence

import structlog

from checks.base import CheckConfig
from checks.registry import get as get_check_type
from nocd.model import FailureClass, Observation

log = structlog.get_logger(__name__)

ResultFn = Callable[[CheckConfig, Observation, float], float | None]
"""Called with (check, observation, lateness); returns the delay to the next run or None."""


def spread_offset(name: str, interval: float) -> float:
    """A stable offset in [0, interval) from the check's name, so restarts keep the spread."""
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    return (h / 2**64) * interval


_Entry = tuple[float, int, str, int]
"""A heap entry: (due, seq, check name, generation); plain tuples compare in C."""


class Scheduler:
    """Runs each enabled, non-passive check on its interval, paced, with deadlines."""

    def __init__(
        self,
        on_result: ResultFn,
        max_concurrency: int = 1000,
        tick: float = 0.005,
        observe_lateness: Callable[[float], None] | None = None,
    ) -> None:
        self._on_result = on_result
        self._sem = asyncio.Semaphore(max_concurrency)
        self._tick = tick
        self._observe_lateness = observe_lateness or (lambda _x: None)
        self._heap: list[_Entry] = []
        self._checks: dict[str, CheckConfig] = {}
        self._gen: dict[str, int] = {}
        self._seq = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.heartbeat = 0.0  # loop time of the last dispatch pass (watchdog, readiness)
        self.running = False
        self.probes_started = 0

    @property
    def inflight(self) -> int:
        """Probes running now."""
        return len(self._inflight)

    def set_checks(self, checks: Sequence[CheckConfig]) -> None:
        """Install (or replace on reload) the checks; unchanged ones keep their schedule."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        wanted = {c.name: c for c in checks if c.enabled and not c.passive}
        old = self._checks
        self._checks = wanted
        for name in list(self._gen):
            if name not in wanted:
                del self._gen[name]  # lazily dropped from the heap on pop
        for name, cfg in wanted.items():
            prev = old.get(name)
            if prev is not None and prev.interval == cfg.interval and name in self._gen:
                continue  # keep its place; the new config is used at its next run
            self._gen[name] = self._gen.get(name, 0) + 1
            self._push(name, now + spread_offset(name, cfg.interval))
        self._wake.set()

    def _push(self, name: str, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, name, self._gen[name]))

    def run_now(self, name: str) -> bool:
        """Probe `name` at the next tick (e.g. an operator asked); False if unknown."""
        if name not in self._checks:
            return False
        self._gen[name] += 1
        self._push(name, asyncio.get_running_loop().time())
        self._wake.set()
        return True

    async def run(self) -> None:
        """Dispatch due probes until cancelled."""
        loop = asyncio.get_running_loop()
        self.running = True
        try:
            while True:
                now = loop.time()
                self.heartbeat = now
                heap = self._heap
                checks, gens = self._checks, self._gen
                while heap and heap[0][0] <= now:
                    due, _seq, name, generation = heapq.heappop(heap)
                    cfg = checks.get(name)
                    if cfg is None or gens.get(name) != generation:
                        continue  # removed or rescheduled: a stale entry
                    self._start(cfg, due, generation)
                sleep = 1.0 if not heap else min(1.0, max(self._tick, heap[0][0] - now))
                self._wake.clear()
                # Not asyncio.wait_for: on 3.11 it swallows a cancel that lands just as the
                # event is set (set_checks/run_now, then stop), and the task never ends.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep):
                        await self._wake.wait()
        finally:
            self.running = False

    def _start(self, cfg: CheckConfig, due: float, generation: int) -> None:
        self.probes_started += 1
        task = asyncio.create_task(self._probe(cfg, due, generation))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _probe(self, cfg: CheckConfig, due: float, generation: int) -> None:
        loop = asyncio.get_running_loop()
        async with self._sem:
            started = loop.time()
            lateness = max(0.0, started - due)
            self._observe_lateness(lateness)
            deadline = started + cfg.timeout
            obs = await run_probe(cfg, deadline)
        try:
            delay = self._on_result(cfg, obs, lateness)
        except Exception as exc:  # noqa: BLE001 - a probe or result bug must not stop the schedule
            log.error("result handling failed", check=cfg.name, error=repr(exc))
            delay = None
        if self._gen.get(cfg.name) != generation:
            return  # removed, or rescheduled by a reload or run_now meanwhile
        current = self._checks[cfg.name]
        now = loop.time()
        # Keep runs evenly apart: the next run is due one interval after this one was due,
        # not after it finished; a retry (soft failure) comes sooner.
        nxt = due + current.interval if delay is None else now + delay
        if nxt < now:  # fell behind (overload): resume paced instead of bursting
            nxt = now + spread_offset(cfg.name, min(current.interval, 1.0))
        self._push(cfg.name, nxt)
        if self._heap[0][1] == self._seq:
            # Now the earliest entry: the dispatcher may be sleeping past it (up to 1 s).
            self._wake.set()

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` seconds for in-flight probes, cancel the rest; returns cancelled."""
        pending = set(self._inflight)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=grace)
        for t in still:
            t.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
        return len(still)


async def run_probe(cfg: CheckConfig, deadline: float) -> Observation:
    """Run a check's probe with a hard stop at the deadline (a hung probe cannot stall others)."""
    loop = asyncio.get_running_loop()
    probe = get_check_type(cfg.type).probe
    start = loop.time()
    try:
        # A small grace past the deadline lets well-behaved probes report their own timeout.
        async with asyncio.timeout(max(0.0, deadline - start) + 0.25):
            return await probe(cfg, deadline)
    except TimeoutError:
        return Observation.failed(
            FailureClass.TIMEOUT, "probe exceeded its deadline", loop.time() - start
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe or result bug must not stop the schedule
        log.error("probe raised", check=cfg.name, error=repr(exc))
        return Observation.failed(FailureClass.INTERNAL, f"probe error: {exc!r}")
