"""The SIP responder's reply dropping (drop_ratio, seeded) and its command-line process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from checks.resources import close_all
from checks.sip import options
from checks.sip.message import build_request, parse
from checks.sip.responder import SipResponder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    await close_all()


def _options(branch: str) -> bytes:
    return build_request(
        "OPTIONS",
        "sip:127.0.0.1",
        via=f"SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{branch}",
        from_="<sip:nocd@127.0.0.1>;tag=t",
        to="<sip:127.0.0.1>",
        call_id=f"{branch}@127.0.0.1",
        cseq=1,
    )


def _drops(ratio: float, seed: int, n: int = 2000) -> list[bool]:
    r = SipResponder(drop_ratio=ratio, seed=seed)
    out = [r.answer(parse(_options(f"b{i}")), ("127.0.0.1", 5999)) is None for i in range(n)]
    assert (r.dropped, r.answered, r.received) == (sum(out), n - sum(out), n)
    return out


def test_default_drops_nothing() -> None:
    assert not any(_drops(0.0, 1))


def test_drop_ratio_is_seeded_and_close_to_the_ratio() -> None:
    a, b, c = _drops(0.1, 7), _drops(0.1, 7), _drops(0.1, 8)
    assert a == b  # same seed, same drops: a soak run can be repeated
    assert a != c
    assert 140 <= sum(a) <= 260  # 2,000 x 10 %, well within 4 sigma
    assert all(_drops(1.0, 1))


def test_acks_are_never_answered_nor_counted_as_drops() -> None:
    r = SipResponder(drop_ratio=1.0, seed=1)
    ack = _options("x").replace(b"OPTIONS", b"ACK")
    assert r.answer(parse(ack), ("127.0.0.1", 5999)) is None
    assert r.dropped == 0


def test_bad_ratio_is_refused() -> None:
    with pytest.raises(ValueError, match="drop_ratio"):
        SipResponder(drop_ratio=1.5)


async def test_a_dropped_reply_is_recovered_by_retransmission() -> None:
    # Half the replies lost: the OPTIONS client retransmits (T1) and still gets its 200.
    r = SipResponder(tcp_port=None, drop_ratio=0.5, seed=3)
    await r.start()
    try:
        cfg = options.Config.model_validate(
            {"name": "d", "type": "sip_options", "target": f"sip:127.0.0.1:{r.udp_port}"}
            | {"t1": "50ms", "timeout": "3s"}
        )
        loop = asyncio.get_running_loop()
        results = [await options.probe(cfg, loop.time() + 3) for _ in range(20)]
    finally:
        await r.stop()
    assert all(o.ok for o in results), [o.detail for o in results if not o.ok]
    assert r.dropped > 0
    assert sum(int(o.values["retransmits"]) for o in results) >= r.dropped
    assert r.received == r.answered + r.dropped


async def test_command_line_prints_ports_then_counts() -> None:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "checks.sip.responder", "--no-tcp", "--drop-ratio", "1"],
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        ports = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        assert ports["tcp_port"] is None
        cfg = options.Config.model_validate(
            {"name": "d", "type": "sip_options", "target": f"sip:127.0.0.1:{ports['udp_port']}"}
            | {"t1": "50ms", "timeout": "300ms"}
        )
        obs = await options.probe(cfg, asyncio.get_running_loop().time() + 0.3)
        assert not obs.ok  # every reply dropped: the probe times out
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert counts["answered"] == 0
    assert counts["dropped"] == counts["received"] >= 2  # the request and its retransmissions
    assert proc.returncode == 0
