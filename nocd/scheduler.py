"""The paced scheduler: a heap of due times, dispatched per tick under a concurrency cap.

Why a heap and not one sleeping task per check: 50,000 sleeping tasks cost ~2 KiB each and
their wake-ups are not spread; a single heap keeps every check's runs evenly apart, lets
start-up and reload be paced (first runs spread over the interval by a stable hash of the
name), and dispatches all due probes in one pass per tick.

Per probe the scheduler does as little as it can (measured in bench/bench_daemon_sip.py): no
semaphore (a counter and a FIFO of waiting probes when the cap is reached) and no timer (each
in-flight task's hard stop is swept every SWEEP seconds; a timer per probe costs a
Python-compared heap push and pop in the event loop, and keeps its garbage for a while).
Check types with a callback-style `start` (UDP SIP OPTIONS) run without a task at all: the
dispatcher calls start() and the result arrives through a callback. They do not count
against `max_concurrency` (a UDP transaction holds no socket or connection, only a table
entry; a silent outage of 10,000 targets with 5 s timeouts must not stall the schedule) and
their hard stops are a heap of plain tuples checked on every pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import heapq
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

import structlog

from checks.base import CheckConfig, ProbeFn, StartFn
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

_Call = tuple[CheckConfig, float, int, float, float]
"""A callback-style probe in flight: (check, due, generation, started, lateness)."""

_FREEZE_AT = 1000  # checks; below this a full collection is short anyway

GRACE = 0.25
"""Past its deadline a probe gets this long to report its own timeout before it is cut."""

SWEEP = 0.1
"""How often in-flight probes are checked against their hard stop (so cut ≤ 0.1 s late)."""

BURST = 250
"""Most probes started per pass; more due ones wait for the next pass, right after the loop
has read what arrived. Usually a pass starts a few dozen (50,000 checks per 30 s at a 20 ms
tick: 33); after a stall thousands are due at once, and sending them all in one callback
would starve the socket reader until its buffer overflowed: answers lost, probes failed,
retries at a third of the interval, more load (seen in bench_daemon_sip.py on a busy VM)."""


class Scheduler:
    """Runs each enabled, non-passive check on its interval, paced, with deadlines."""

    def __init__(
        self,
        on_result: ResultFn,
        max_concurrency: int = 1000,
        tick: float = 0.02,
        observe_lateness: Callable[[float], None] | None = None,
    ) -> None:
        self._on_result = on_result
        self._max = max_concurrency
        # Probes due while `max_concurrency` run: started in due order as slots free up.
        self._waiting: deque[tuple[CheckConfig, float, int]] = deque()
        self._cut: set[asyncio.Task[None]] = set()  # tasks cancelled by their hard stop
        self._probe_fns: dict[str, ProbeFn] = {}
        self._start_fns: dict[str, StartFn | None] = {}
        self._calls: dict[int, _Call] = {}  # callback-style probes in flight, by token
        self._stops: list[tuple[float, int]] = []  # heap of their (hard stop, token)
        self._call_seq = 0
        self._time: Callable[[], float] = lambda: 0.0  # the loop's clock, set by set_checks
        self._tick = tick
        self._observe_lateness = observe_lateness or (lambda _x: None)
        self._heap: list[_Entry] = []
        # New or re-timed checks as (name, offset, generation), put on the heap by the next
        # dispatcher pass: their spread starts when dispatching can, not when set_checks ran
        # (the daemon's reload hooks and start-up work after it took 0.2-0.6 s at 20,000-
        # 50,000 checks, and every probe due meanwhile counted as late).
        self._fresh: list[tuple[str, float, int]] = []
        self._checks: dict[str, CheckConfig] = {}
        self._gen: dict[str, int] = {}
        self._seq = 0
        self._inflight: dict[asyncio.Task[None], float] = {}  # task → its hard stop
        self._next_sweep = 0.0
        self._freeze = False
        self._wake = asyncio.Event()
        self.heartbeat = 0.0  # loop time of the last dispatch pass (watchdog, readiness)
        self.running = False
        self.probes_started = 0

    @property
    def inflight(self) -> int:
        """Probes running now (tasks and callback-style)."""
        return len(self._inflight) + len(self._calls)

    def set_checks(self, checks: Sequence[CheckConfig]) -> None:
        """Install (or replace on reload) the checks; unchanged ones keep their schedule."""
        loop = asyncio.get_running_loop()
        self._time = loop.time
        wanted = {c.name: c for c in checks if c.enabled and not c.passive}
        self._probe_fns = {c.type: get_check_type(c.type).probe for c in wanted.values()}
        self._start_fns = {c.type: get_check_type(c.type).start for c in wanted.values()}
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
            self._fresh.append((name, spread_offset(name, cfg.interval), self._gen[name]))
        self._wake.set()
        # The config's objects (and what reload hooks build from it, after this call) live
        # until the next reload: the dispatcher's next pass moves them out of the cyclic
        # GC's reach, else each full collection re-scans every check's model (a 0.4 s stall
        # at 20,000 checks, seen in bench_daemon_sip.py, making probes late).
        self._freeze = len(wanted) >= _FREEZE_AT

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
                if self._freeze:
                    self._freeze = False
                    gc.freeze()
                now = loop.time()
                self.heartbeat = now
                heap = self._heap
                if self._fresh:
                    self._place_fresh(now)
                checks, gens, starts = self._checks, self._gen, self._start_fns
                budget = BURST
                while heap and heap[0][0] <= now:
                    budget -= 1
                    if budget < 0:
                        break  # the rest next pass, once the loop has served its I/O
                    due, _seq, name, generation = heapq.heappop(heap)
                    cfg = checks.get(name)
                    if cfg is None or gens.get(name) != generation:
                        continue  # removed or rescheduled: a stale entry
                    start = starts.get(cfg.type)
                    if start is not None and self._call(start, cfg, due, generation, now):
                        continue  # started without a task
                    if len(self._inflight) < self._max:
                        self._start(cfg, due, generation, now)
                    else:
                        self._waiting.append((cfg, due, generation))
                if self._inflight and now >= self._next_sweep:
                    self._sweep(now)
                stops = self._stops
                if stops:
                    self._cut_calls(now)
                sleep = 1.0 if not heap else min(1.0, max(self._tick, heap[0][0] - now))
                if budget < 0:
                    sleep = 0.0  # behind: one loop iteration (I/O first), then go on
                if self._inflight:
                    sleep = min(sleep, max(self._tick, self._next_sweep - now))
                if stops:
                    sleep = min(sleep, max(self._tick, stops[0][0] - now))
                self._wake.clear()
                # Not asyncio.wait_for: on 3.11 it swallows a cancel that lands just as the
                # event is set (set_checks/run_now, then stop), and the task never ends.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep):
                        await self._wake.wait()
        finally:
            self.running = False

    def _place_fresh(self, now: float) -> None:
        """Put the checks installed since the last pass on the heap, spread from `now`."""
        fresh, self._fresh = self._fresh, []
        heap, gens = self._heap, self._gen
        for name, offset, generation in fresh:
            if gens.get(name) == generation:  # else removed or run_now'd meanwhile
                self._seq += 1
                heap.append((now + offset, self._seq, name, generation))
        heapq.heapify(heap)

    def _sweep(self, now: float) -> None:
        """Cut the probes past their hard stop (usually none: probes honour their deadline)."""
        self._next_sweep = now + SWEEP
        for task in [t for t, stop in self._inflight.items() if stop <= now]:
            if not task.done() and task not in self._cut:
                self._cut.add(task)
                task.cancel()

    def _call(
        self, start: StartFn, cfg: CheckConfig, due: float, generation: int, now: float
    ) -> bool:
        """Start a callback-style probe; False when its type wants the task path for it."""
        self._call_seq += 1
        token = self._call_seq
        started = self._time()
        try:
            # One deadline per pass (not per probe): the UDP transport batches its timers.
            if not start(cfg, now + cfg.timeout, partial(self._called, token)):
                return False
        except Exception as exc:  # noqa: BLE001 - a broken start() falls back to the task path
            log.error("probe start raised", check=cfg.name, error=repr(exc))
            return False
        self.probes_started += 1
        lateness = started - due if started > due else 0.0
        self._observe_lateness(lateness)
        self._calls[token] = (cfg, due, generation, started, lateness)
        heapq.heappush(self._stops, (now + cfg.timeout + GRACE, token))
        return True

    def _called(self, token: int, obs: Observation) -> None:
        """A callback-style probe's result (ignored when it was cut by its hard stop)."""
        entry = self._calls.pop(token, None)
        if entry is not None:
            cfg, due, generation, _started, lateness = entry
            self._finish(cfg, due, generation, obs, lateness)

    def _cut_calls(self, now: float) -> None:
        """Fail callback-style probes past their hard stop; drop answered ones off the top."""
        stops, calls = self._stops, self._calls
        while stops and (stops[0][0] <= now or stops[0][1] not in calls):
            _stop, token = heapq.heappop(stops)
            entry = calls.pop(token, None)
            if entry is None:
                continue  # answered in time
            cfg, due, generation, started, lateness = entry
            obs = Observation.failed(
                FailureClass.TIMEOUT, "probe exceeded its deadline", self._time() - started
            )
            self._finish(cfg, due, generation, obs, lateness)

    def _start(self, cfg: CheckConfig, due: float, generation: int, now: float) -> None:
        self.probes_started += 1
        deadline = now + cfg.timeout
        task = asyncio.create_task(self._probe(cfg, due, generation, deadline))
        self._inflight[task] = deadline + GRACE
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._cut.discard(task)
        while self._waiting and len(self._inflight) < self._max:
            cfg, due, generation = self._waiting.popleft()
            if self._gen.get(cfg.name) == generation:  # else removed or rescheduled: skip
                self._start(cfg, due, generation, asyncio.get_running_loop().time())

    async def _probe(self, cfg: CheckConfig, due: float, generation: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        lateness = started - due
        self._observe_lateness(lateness if lateness > 0.0 else 0.0)
        try:
            probe = self._probe_fns.get(cfg.type) or get_check_type(cfg.type).probe
            obs = await probe(cfg, deadline)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task not in self._cut:
                raise
            self._cut.discard(task)
            if task is not None and task.uncancel() > 0:
                raise  # cancelled by someone else too (shutdown)
            obs = Observation.failed(
                FailureClass.TIMEOUT, "probe exceeded its deadline", loop.time() - started
            )
        except Exception as exc:  # noqa: BLE001 - a probe or result bug must not stop the schedule
            log.error("probe raised", check=cfg.name, error=repr(exc))
            obs = Observation.failed(FailureClass.INTERNAL, f"probe error: {exc!r}")
        self._finish(cfg, due, generation, obs, lateness if lateness > 0.0 else 0.0)

    def _finish(
        self, cfg: CheckConfig, due: float, generation: int, obs: Observation, lateness: float
    ) -> None:
        """Hand the result on and schedule the check's next run (both probe paths)."""
        try:
            delay = self._on_result(cfg, obs, lateness)
        except Exception as exc:  # noqa: BLE001 - a probe or result bug must not stop the schedule
            log.error("result handling failed", check=cfg.name, error=repr(exc))
            delay = None
        if self._gen.get(cfg.name) != generation:
            return  # removed, or rescheduled by a reload or run_now meanwhile
        current = self._checks[cfg.name]
        now = self._time()
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
        self._waiting.clear()  # not started yet: nothing to wait for
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        cancelled = 0
        pending = set(self._inflight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
            cancelled = len(still)
        # Callback-style probes end by their own deadline; whatever is left at the end of the
        # grace is forgotten (a late callback finds no entry and is ignored).
        while self._calls and loop.time() < end:  # noqa: ASYNC110 - bounded by the grace
            await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))
        cancelled += len(self._calls)
        self._calls.clear()
        self._stops.clear()
        return cancelled


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
