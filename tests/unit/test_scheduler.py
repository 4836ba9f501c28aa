"""The paced scheduler: spread first runs, even spacing, reload, deadlines, concurrency cap.

Assertions are on structure (due times, order, counts), not on tight wall-clock timings;
due times are exact because the scheduler computes them, not the loop's wake-ups.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

import nocd.scheduler as scheduler_mod
from checks import tcp
from checks.base import CheckConfig, CheckType, default_evaluate
from nocd.model import FailureClass, Observation
from nocd.scheduler import Scheduler, run_probe, spread_offset

ProbeBehaviour = Callable[[CheckConfig, float], Awaitable[Observation]]


def check(name: str, interval: float = 0.5, timeout: float = 0.2) -> tcp.Config:
    """A check with sub-second timing (model_construct skips the 1s minimum meant for users)."""
    return tcp.Config.model_construct(
        name=name, type="tcp", target="127.0.0.1:9", interval=interval, timeout=timeout
    )


async def quick(cfg: CheckConfig, deadline: float) -> Observation:
    return Observation.success("ok")


@dataclass
class Harness:
    """Runs a real Scheduler with fake probes and records what happened."""

    behaviours: dict[str, ProbeBehaviour] = field(default_factory=dict)
    starts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    results: dict[str, list[tuple[Observation, float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    lateness: list[float] = field(default_factory=list)
    retry_delay: dict[str, float] = field(default_factory=dict)
    active: int = 0
    max_active: int = 0
    sched: Scheduler | None = None

    async def probe(self, cfg: CheckConfig, deadline: float) -> Observation:
        self.starts[cfg.name].append(asyncio.get_running_loop().time())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self.behaviours.get(cfg.name, quick)(cfg, deadline)
        finally:
            self.active -= 1

    def on_result(self, cfg: CheckConfig, obs: Observation, lateness: float) -> float | None:
        self.results[cfg.name].append((obs, lateness, asyncio.get_running_loop().time()))
        return self.retry_delay.get(cfg.name)

    def dues(self, name: str) -> list[float]:
        """Due times of the finished runs of `name` (start − lateness, as the scheduler saw)."""
        return [
            t - late for t, (_, late, _) in zip(self.starts[name], self.results[name], strict=False)
        ]

    async def wait_for(self, cond: Callable[[], bool], limit: float = 5.0) -> None:
        """Poll `cond` until true; TimeoutError after `limit` seconds."""
        async with asyncio.timeout(limit):
            while not cond():
                await asyncio.sleep(0.01)


@pytest.fixture
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    h = Harness()

    def fake_type(key: str) -> CheckType:
        return CheckType(key, tcp.Config, h.probe, default_evaluate)

    monkeypatch.setattr(scheduler_mod, "get_check_type", fake_type)
    yield h


@pytest.fixture
async def running(harness: Harness) -> AsyncIterator[tuple[Harness, Scheduler]]:
    sched = Scheduler(
        harness.on_result, max_concurrency=100, tick=0.005, observe_lateness=harness.lateness.append
    )
    harness.sched = sched
    task = asyncio.create_task(sched.run())
    yield harness, sched
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sched.drain(0.0)


def test_spread_offset_is_stable_and_uniform() -> None:
    offsets = [spread_offset(f"phone-{i}", 60.0) for i in range(2000)]
    assert offsets == [spread_offset(f"phone-{i}", 60.0) for i in range(2000)]
    assert all(0.0 <= o < 60.0 for o in offsets)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o // 6)] += 1
    # 2,000 names over 10 buckets: each holds 200 ± a generous margin, none is empty.
    assert min(buckets) > 120 and max(buckets) < 280


async def test_first_runs_are_spread_over_the_interval(
    running: tuple[Harness, Scheduler],
) -> None:
    h, sched = running
    names = [f"c{i}" for i in range(20)]
    t0 = asyncio.get_running_loop().time()
    sched.set_checks([check(n, interval=0.5) for n in names])
    await h.wait_for(lambda: all(h.results[n] for n in names))
    for n in names:
        assert h.dues(n)[0] == pytest.approx(t0 + spread_offset(n, 0.5), abs=0.01)
        assert h.starts[n][0] >= h.dues(n)[0]  # never early
    # Runs happen in offset order (spread, not all at t0).
    by_start = sorted(names, key=lambda n: h.starts[n][0])
    by_offset = sorted(names, key=lambda n: spread_offset(n, 0.5))
    assert by_start[0] == by_offset[0] and by_start[-1] == by_offset[-1]


async def test_later_runs_are_one_interval_apart(running: tuple[Harness, Scheduler]) -> None:
    h, sched = running

    async def slowish(cfg: CheckConfig, deadline: float) -> Observation:
        await asyncio.sleep(0.05)  # a probe's duration must not push the next run later
        return Observation.success()

    h.behaviours["b"] = slowish
    sched.set_checks([check("a", 0.3), check("b", 0.4)])
    await h.wait_for(lambda: len(h.results["a"]) >= 4 and len(h.results["b"]) >= 4)
    for name, interval in (("a", 0.3), ("b", 0.4)):
        dues = h.dues(name)
        gaps = [b - a for a, b in itertools.pairwise(dues)]
        assert gaps == pytest.approx([interval] * len(gaps), abs=0.01)


async def test_soft_failure_retries_sooner(running: tuple[Harness, Scheduler]) -> None:
    h, sched = running
    h.retry_delay["r"] = 0.05
    sched.set_checks([check("r", interval=10.0, timeout=0.2)])
    sched.run_now("r")
    # With a 10s interval only the first run could happen; retries come every 50 ms.
    await h.wait_for(lambda: len(h.results["r"]) >= 3)
    # A retry pushed while the dispatcher sleeps must wake it (it used to sleep up to 1 s).
    assert max(late for _, late, _ in h.results["r"]) < 0.5


async def test_cancel_right_after_a_wake_stops_the_dispatcher(harness: Harness) -> None:
    # Regression: asyncio.wait_for on 3.11 swallowed a cancel landing as the event was set.
    sched = Scheduler(harness.on_result)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(0.01)
    sched.set_checks([check("x", 5.0)])  # sets the wake-up event
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done and task.cancelled()


async def test_reload_keeps_unchanged_checks_in_place(
    running: tuple[Harness, Scheduler],
) -> None:
    _, sched = running
    sched.set_checks([check("keep", 5.0), check("retime", 5.0), check("drop", 5.0)])
    await asyncio.sleep(0.02)  # the dispatcher's next pass puts them on the heap
    before = {name: (due, gen) for due, _seq, name, gen in sched._heap}
    # A changed timeout keeps the place too; only the interval decides the pacing.
    sched.set_checks([check("keep", 5.0, timeout=1.0), check("retime", 7.0), check("new", 5.0)])
    await asyncio.sleep(0.02)
    live = {
        name: (due, gen)
        for due, _seq, name, gen in sched._heap
        if name in sched._checks and sched._gen[name] == gen
    }
    assert live["keep"] == before["keep"]
    assert live["retime"][1] == before["retime"][1] + 1
    assert live["retime"][0] > before["retime"][0] - 1e-9  # re-spread from the reload time
    assert "new" in live and "drop" not in live


async def test_removed_check_stops_running(running: tuple[Harness, Scheduler]) -> None:
    h, sched = running
    sched.set_checks([check("stay", 0.2), check("gone", 0.2)])
    await h.wait_for(lambda: len(h.results["gone"]) >= 1 and len(h.results["stay"]) >= 1)
    sched.set_checks([check("stay", 0.2)])
    await h.wait_for(lambda: not sched.inflight)
    n_gone, n_stay = len(h.starts["gone"]), len(h.results["stay"])
    await h.wait_for(lambda: len(h.results["stay"]) >= n_stay + 2)
    assert len(h.starts["gone"]) == n_gone


async def test_run_now(running: tuple[Harness, Scheduler]) -> None:
    h, sched = running
    sched.set_checks([check("slow-interval", 60.0, timeout=1.0)])
    assert not sched.run_now("unknown")
    h.starts.clear()
    assert sched.run_now("slow-interval")
    await h.wait_for(lambda: len(h.results["slow-interval"]) >= 1, limit=2.0)


async def test_hanging_probe_is_cut_at_deadline_and_stalls_nothing(
    running: tuple[Harness, Scheduler],
) -> None:
    h, sched = running
    never = asyncio.Event()

    async def hang(cfg: CheckConfig, deadline: float) -> Observation:
        await never.wait()  # ignores its deadline, like a wedged library call
        return Observation.success()

    h.behaviours["hang"] = hang
    sched.set_checks([check("hang", 2.0, timeout=0.2), check("fast", 0.2)])
    await h.wait_for(lambda: len(h.results["hang"]) == 1)
    obs, _, finished = h.results["hang"][0]
    assert (obs.ok, obs.failure, obs.detail) == (
        False,
        FailureClass.TIMEOUT,
        "probe exceeded its deadline",
    )
    # Cut no earlier than its deadline (timeout) and not much after the 0.25 s grace.
    assert 0.2 <= finished - h.starts["hang"][0] < 2.0
    # The other check kept its pace meanwhile.
    during = [t for t in h.starts["fast"] if h.starts["hang"][0] <= t <= finished]
    assert len(during) >= 1


async def test_concurrency_cap_and_lateness(harness: Harness) -> None:
    sched = Scheduler(
        harness.on_result, max_concurrency=3, observe_lateness=harness.lateness.append
    )

    async def busy(cfg: CheckConfig, deadline: float) -> Observation:
        await asyncio.sleep(0.1)
        return Observation.success()

    names = [f"b{i}" for i in range(12)]
    for n in names:
        harness.behaviours[n] = busy
    task = asyncio.create_task(sched.run())
    try:
        # All due within 50 ms: the cap makes most of them wait for a slot.
        sched.set_checks([check(n, interval=10.0, timeout=0.5) for n in names])
        for n in names:
            sched.run_now(n)
        await harness.wait_for(lambda: all(harness.results[n] for n in names))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert harness.max_active == 3
    assert len(harness.lateness) == len(names)
    assert all(x >= 0 for x in harness.lateness)
    # Twelve 100 ms probes, three at a time: the last ones start ≥ 300 ms after due.
    assert max(harness.lateness) >= 0.25


async def test_drain_waits_then_cancels(running: tuple[Harness, Scheduler]) -> None:
    h, sched = running
    release = asyncio.Event()

    async def stuck(cfg: CheckConfig, deadline: float) -> Observation:
        await release.wait()
        return Observation.success()

    async def brief(cfg: CheckConfig, deadline: float) -> Observation:
        await asyncio.sleep(0.05)
        return Observation.success()

    h.behaviours.update({"stuck": stuck, "brief": brief})
    sched.set_checks([check("stuck", 10.0, timeout=5.0), check("brief", 10.0, timeout=5.0)])
    sched.run_now("stuck")
    sched.run_now("brief")
    await h.wait_for(lambda: sched.inflight == 2)
    cancelled = await sched.drain(0.3)
    assert cancelled == 1  # brief finished inside the grace, stuck was cancelled
    assert len(h.results["brief"]) == 1 and not h.results["stuck"]


async def test_run_probe_turns_exceptions_into_observations(harness: Harness) -> None:
    async def boom(cfg: CheckConfig, deadline: float) -> Observation:
        raise RuntimeError("library bug")

    harness.behaviours["boom"] = boom
    loop = asyncio.get_running_loop()
    obs = await run_probe(check("boom"), loop.time() + 1)
    assert (obs.ok, obs.failure) == (False, FailureClass.INTERNAL)
    assert "library bug" in obs.detail
    ok = await run_probe(check("fine"), loop.time() + 1)
    assert ok.ok


async def test_run_probe_propagates_cancellation(harness: Harness) -> None:
    async def forever(cfg: CheckConfig, deadline: float) -> Observation:
        await asyncio.sleep(3600)
        return Observation.success()

    harness.behaviours["forever"] = forever
    task = asyncio.create_task(run_probe(check("forever"), asyncio.get_running_loop().time() + 60))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_broken_result_handler_does_not_stop_the_check(harness: Harness) -> None:
    calls = 0

    def bad(cfg: CheckConfig, obs: Observation, lateness: float) -> float | None:
        nonlocal calls
        calls += 1
        raise ValueError("handler bug")

    sched = Scheduler(bad)
    task = asyncio.create_task(sched.run())
    try:
        sched.set_checks([check("x", 0.1, timeout=0.05)])
        await harness.wait_for(lambda: calls >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sched.probes_started >= 2


async def test_passive_and_disabled_checks_are_not_scheduled(
    running: tuple[Harness, Scheduler],
) -> None:
    h, sched = running
    disabled = tcp.Config.model_construct(
        name="off", type="tcp", target="127.0.0.1:9", interval=0.1, timeout=0.05, enabled=False
    )
    sched.set_checks([disabled, check("on", 0.1, timeout=0.05)])
    await h.wait_for(lambda: len(h.results["on"]) >= 3)
    assert "off" not in h.starts


async def test_first_runs_are_spread_from_when_dispatching_starts(harness: Harness) -> None:
    # Start-up work after set_checks (the daemon's reload hooks, its HTTP listener) must not
    # make the first probes late: their spread starts at the dispatcher's first pass.
    sched = Scheduler(
        harness.on_result, max_concurrency=100, observe_lateness=harness.lateness.append
    )
    names = [f"s{i}" for i in range(20)]
    sched.set_checks([check(n, interval=0.5) for n in names])
    await asyncio.sleep(0.3)  # busy elsewhere before the dispatcher runs
    task = asyncio.create_task(sched.run())
    try:
        await harness.wait_for(lambda: all(harness.results[n] for n in names))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert max(harness.lateness) < 0.2  # not the 0.3 s of the delay
