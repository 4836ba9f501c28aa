"""The task-free UDP SIP OPTIONS path: same Observations as probe(), not capped, cut at its stop.

`options.start()` is what the scheduler calls for UDP targets given as literal addresses;
these tests hold it to probe()'s behaviour against the built-in responder and scripted
peers on 127.0.0.1, and hold the scheduler to its promises for callback-style probes.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

import nocd.scheduler as scheduler_mod
from checks import tcp
from checks.base import CheckConfig, CheckType, DoneFn, default_evaluate
from checks.registry import check_types
from checks.resources import close_all
from checks.sip import options
from checks.sip.message import build_response, parse
from checks.sip.responder import SipResponder
from checks.sip.transport import udp_endpoint
from nocd.model import FailureClass, Observation
from nocd.scheduler import Scheduler, spread_offset
from tests.peers import free_port


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def responder() -> AsyncIterator[SipResponder]:
    r = SipResponder()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def _cfg(target: str, **kw: object) -> options.Config:
    return options.Config.model_validate(
        {"name": "fast", "type": "sip_options", "target": target} | kw
    )


async def _via_start(cfg: options.Config, deadline: float) -> Observation:
    fut: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
    assert options.start(cfg, deadline, fut.set_result)
    assert not fut.done()  # done() never runs inside start()
    return await fut


def _same(a: Observation, b: Observation) -> None:
    """Equal but for the measured times."""
    assert (a.ok, a.failure, a.detail) == (b.ok, b.failure, b.detail)
    strip = {"rtt_ms"}
    assert {k: v for k, v in a.values.items() if k not in strip} == {
        k: v for k, v in b.values.items() if k not in strip
    }


@pytest.mark.parametrize("status", [200, 503, 404, 486])
async def test_start_gives_the_same_observation_as_probe(
    responder: SipResponder, status: int
) -> None:
    responder.status = status
    cfg = _cfg(f"sip:127.0.0.1:{responder.udp_port}")
    loop = asyncio.get_running_loop()
    fast = await _via_start(cfg, loop.time() + 2)
    slow = await options.probe(cfg, loop.time() + 2)
    _same(fast, slow)
    assert fast.values["status"] == status and fast.values["server"] == "nocd-responder"
    assert 0 < fast.duration_s < 1 and fast.values["rtt_ms"] > 0


async def test_start_times_out_after_t1_doubling_retransmissions(responder: SipResponder) -> None:
    responder.silent = True
    cfg = _cfg(f"sip:127.0.0.1:{responder.udp_port}", t1="50ms")
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await _via_start(cfg, start + 0.5)
    # Hard stop at the deadline (its own exact timer, not the 10 ms retransmission grid).
    assert 0.5 <= loop.time() - start < 0.7
    # Sends at 0, 50, 150 and 350 ms (timer E doubling, each ≤ 10 ms late), then the deadline.
    assert responder.received == 4
    _same(obs, await options.probe(cfg, loop.time() + 0.5))
    assert obs.failure is FailureClass.TIMEOUT and obs.detail == "no SIP response"
    assert 0.5 <= obs.duration_s < 0.7


async def test_start_icmp_refusal_and_garbage_match_probe() -> None:
    closed = _cfg(f"sip:127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    loop = asyncio.get_running_loop()
    refused = await _via_start(closed, loop.time() + 3)
    assert refused.failure is FailureClass.REFUSED
    _same(refused, await options.probe(closed, loop.time() + 3))

    def garbage(data: bytes) -> bytes:
        branch = parse(data).top_via_branch() or ""
        return f"SIP/2.0 2OO OK\r\nVia: SIP/2.0/UDP h;branch={branch}\r\n\r\n".encode()

    class Peer(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: Any = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            # A provisional first (keeps the transaction), then garbage naming our branch.
            self.t.sendto(build_response(parse(data), 100, "Trying"), addr)
            self.t.sendto(garbage(data), addr)

    transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    try:
        cfg = _cfg(f"sip:127.0.0.1:{transport.get_extra_info('sockname')[1]}")
        bad = await _via_start(cfg, loop.time() + 2)
        assert bad.failure is FailureClass.PROTOCOL
        _same(bad, await options.probe(cfg, loop.time() + 2))
    finally:
        transport.close()
    assert not udp_endpoint(socket.AF_INET).pending


@pytest.mark.parametrize(
    "kw",
    [
        {"target": "sip:pbx.example.com"},  # needs DNS: a coroutine
        {"target": "sip:127.0.0.1:5060;transport=tcp"},
        {"target": "sips:127.0.0.1:5061"},
        {"target": "sip:127.0.0.1:5060", "server_name": "pbx.example.com"},
    ],
)
async def test_start_declines_what_needs_the_task_path(kw: dict[str, str]) -> None:
    called: list[Observation] = []
    cfg = _cfg(**kw)
    assert not options.start(cfg, asyncio.get_running_loop().time() + 1, called.append)
    await asyncio.sleep(0.05)
    assert not called


def _check(name: str, interval: float = 10.0, timeout: float = 0.2) -> tcp.Config:
    return tcp.Config.model_construct(
        name=name, type="tcp", target="127.0.0.1:9", interval=interval, timeout=timeout
    )


async def test_callback_probes_skip_the_cap_and_are_cut_at_their_hard_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pending: dict[str, DoneFn] = {}
    results: dict[str, list[Observation]] = {}

    def start(cfg: CheckConfig, deadline: float, done: DoneFn) -> bool:
        if cfg.name.startswith("task"):
            return False  # this one wants the coroutine
        pending[cfg.name] = done
        return True

    async def probe(cfg: CheckConfig, deadline: float) -> Observation:
        return Observation.success("task path")

    monkeypatch.setattr(
        scheduler_mod,
        "get_check_type",
        lambda key: CheckType(key, tcp.Config, probe, default_evaluate, start),
    )

    def on_result(cfg: CheckConfig, obs: Observation, lateness: float) -> float | None:
        results.setdefault(cfg.name, []).append(obs)
        return None

    sched = Scheduler(on_result, max_concurrency=1)
    runner = asyncio.create_task(sched.run())
    try:
        names = [f"cb{i}" for i in range(5)]
        sched.set_checks([_check(n) for n in [*names, "task"]])
        for n in [*names, "task"]:
            sched.run_now(n)
        async with asyncio.timeout(2):
            while len(pending) < 5 or "task" not in results:
                await asyncio.sleep(0.01)
        # Five callback probes in flight despite max_concurrency=1; the task one ran too.
        assert sched.inflight == 5 and results["task"][0].detail == "task path"
        pending.pop("cb0")(Observation.success("answered"))
        assert results["cb0"][0].detail == "answered" and sched.inflight == 4
        async with asyncio.timeout(2):  # timeout 0.2 s + GRACE: the others are cut
            while sched.inflight:
                await asyncio.sleep(0.01)
        for n in names[1:]:
            obs = results[n][0]
            assert (obs.failure, obs.detail) == (
                FailureClass.TIMEOUT,
                "probe exceeded its deadline",
            )
            assert 0.2 <= obs.duration_s < 1.0
        pending["cb1"](Observation.success("too late"))  # ignored: already cut
        assert len(results["cb1"]) == 1
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert await sched.drain(0.0) == 0


async def test_drain_forgets_callback_probes_left_at_the_end_of_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[DoneFn] = []

    def start(cfg: CheckConfig, deadline: float, done: DoneFn) -> bool:
        held.append(done)
        return True

    async def probe(cfg: CheckConfig, deadline: float) -> Observation:
        raise AssertionError("not used")

    monkeypatch.setattr(
        scheduler_mod,
        "get_check_type",
        lambda key: CheckType(key, tcp.Config, probe, default_evaluate, start),
    )
    results: list[Observation] = []
    sched = Scheduler(lambda _c, obs, _l: results.append(obs))
    runner = asyncio.create_task(sched.run())
    sched.set_checks([_check("a", timeout=5.0)])
    sched.run_now("a")
    async with asyncio.timeout(2):
        while not held:
            await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert await sched.drain(0.1) == 1 and sched.inflight == 0
    held[0](Observation.success("after shutdown"))
    assert not results


async def test_silent_outage_of_10000_udp_targets_does_not_make_the_scheduler_fall_behind() -> None:
    # 10,000 sip_options targets that never answer (a bound socket nobody reads: no ICMP),
    # timeout/interval 2 s / 12 s (the 5 s / 30 s of production, compressed): ~1,670 UDP
    # transactions are in flight at once, beyond the default max_concurrency of 1,000. They
    # must not queue behind the cap: every probe starts on time and times out on its own.
    loop = asyncio.get_running_loop()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    n, interval, timeout, run_for = 10_000, 12.0, 2.0, 3.5
    cfgs = [
        options.Config(
            name=f"phone-{i}",
            type="sip_options",
            target=f"sip:127.0.0.1:{port}",
            interval=interval,
            timeout=timeout,
        )
        for i in range(n)
    ]
    check_types()  # import every check module now, not inside the timed window
    results: list[tuple[Observation, float]] = []
    late: list[float] = []

    def on_result(cfg: CheckConfig, obs: Observation, lateness: float) -> float | None:
        results.append((obs, lateness))
        return None

    sched = Scheduler(on_result, max_concurrency=1000, observe_lateness=late.append)
    runner = asyncio.create_task(sched.run())
    peak = 0
    try:
        t0 = loop.time()
        sched.set_checks(cfgs)
        setup = loop.time() - t0  # probes due meanwhile start this late (0.1-0.7 s on a busy VM)
        while loop.time() < t0 + run_for:
            peak = max(peak, sched.inflight)
            await asyncio.sleep(0.05)
        elapsed = loop.time() - t0
        due = sum(1 for c in cfgs if spread_offset(c.name, interval) <= elapsed - 0.3)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await sched.drain(0.0)
        silent.close()
    assert peak > 1200  # beyond the cap: UDP transactions are not counted against it
    assert not sched._waiting
    assert sched.probes_started >= due > 2000  # everything due has started...
    assert max(late) < setup + 0.5  # ...on time (behind the cap: up to 1.5 s and growing)
    # Those started in the first ~1.5 s have timed out by themselves at their deadline.
    assert len(results) > 1000
    for obs, _lateness in results:
        assert (obs.failure, obs.detail) == (FailureClass.TIMEOUT, "no SIP response")
        # At the deadline (set when the tick's pass began), before the hard stop would cut.
        assert timeout - 0.1 <= obs.duration_s < timeout + 1.0  # + the loop's lag on a busy VM


async def test_a_backlog_is_started_in_bursts_with_the_loop_served_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a stall thousands of probes are due at once; the dispatcher must not send them
    # all in one callback while answers pile up unread in the socket buffer.
    started = 0

    def start(cfg: CheckConfig, deadline: float, done: DoneFn) -> bool:
        nonlocal started
        started += 1
        asyncio.get_running_loop().call_soon(done, Observation.success())
        return True

    async def probe(cfg: CheckConfig, deadline: float) -> Observation:
        raise AssertionError("not used")

    monkeypatch.setattr(
        scheduler_mod,
        "get_check_type",
        lambda key: CheckType(key, tcp.Config, probe, default_evaluate, start),
    )
    n = 4 * scheduler_mod.BURST
    seen: list[int] = []  # starts so far, each time another callback got the loop

    def reader() -> None:  # stands for the socket's readiness callback
        seen.append(started)
        if started < n:
            asyncio.get_running_loop().call_soon(reader)

    sched = Scheduler(lambda _c, _o, _l: None)
    sched.set_checks([_check(f"c{i}", interval=60.0, timeout=1.0) for i in range(n)])
    for i in range(n):
        sched.run_now(f"c{i}")  # all due now
    asyncio.get_running_loop().call_soon(reader)
    runner = asyncio.create_task(sched.run())
    try:
        async with asyncio.timeout(5):
            while started < n:
                await asyncio.sleep(0.01)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    steps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(steps) <= scheduler_mod.BURST  # never more than a burst between two reads
    assert len([s for s in steps if s > 0]) >= 4  # and the backlog went out in ≥ 4 bursts
