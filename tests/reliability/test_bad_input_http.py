"""The `http` check against hostile targets: huge, slow and invalid bodies (issue #10).

A raw TCP server on 127.0.0.1 writes whatever HTTP (or not) each case needs. The probe must
return an Observation (never raise), within its timeout, having read a bounded amount: the
server counts the bytes it managed to send before the probe hung up, and the probe's Python
allocations are traced.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from checks import http
from checks.resources import close_all
from nocd.model import FailureClass, Observation

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
GIB = 1 << 30
ZEROS = bytes(1 << 16)


@dataclass
class Server:
    """One hostile HTTP server; `sent` counts body bytes written before the client went."""

    handler: Handler
    port: int = 0
    sent: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await r.readuntil(b"\r\n\r\n")  # the probe's request head
            await self.handler(r, w, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the probe hung up: that is the point of most cases
        finally:
            w.close()
            self.tasks.discard(task)

    async def stream(self, w: asyncio.StreamWriter, head: bytes, total: int, chunk: bytes) -> None:
        """Write `head`, then `chunk` repeatedly up to `total` bytes, as fast as read."""
        w.write(head)
        while self.sent < total:
            w.write(chunk)
            self.sent += len(chunk)
            await w.drain()


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[tuple[Server, asyncio.Server]] = []

    async def start(handler: Handler) -> Server:
        srv = Server(handler)
        tcp = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
        srv.port = tcp.sockets[0].getsockname()[1]
        servers.append((srv, tcp))
        return srv

    yield start
    await close_all()  # the check's shared session first: it holds the client sockets
    for srv, tcp in servers:
        tcp.close()
        for task in list(srv.tasks):
            task.cancel()
        await asyncio.gather(*srv.tasks, return_exceptions=True)
        await tcp.wait_closed()


async def probe(srv: Server, timeout: float = 2.0, **kw: object) -> tuple[Observation, float]:
    """Probe the server; returns the observation and the seconds it took."""
    cfg = http.Config.model_validate(
        {
            "name": "hostile",
            "type": "http",
            "target": f"http://127.0.0.1:{srv.port}/",
            "timeout": timeout,
            "interval": 10,
            **kw,
        }
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await http.probe(cfg, start + timeout)
    return obs, loop.time() - start


def head(*lines: str) -> bytes:
    return ("\r\n".join(["HTTP/1.1 200 OK", *lines]) + "\r\n\r\n").encode()


# ---- huge bodies: read at most MAX_BODY, then hang up ------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_a_1_gib_body_is_cut_at_the_cap(
    hostile: Callable[..., Awaitable[Server]], framing: str
) -> None:
    chunked = framing == "chunked"

    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        lines = {
            "content-length": [f"Content-Length: {GIB}"],
            "chunked": ["Transfer-Encoding: chunked"],
            "until-close": ["Connection: close"],
        }[framing]
        chunk = b"%x\r\n%s\r\n" % (len(ZEROS), ZEROS) if chunked else ZEROS
        await s.stream(w, head(*lines), GIB, chunk)

    srv = await hostile(handler)
    tracemalloc.start()
    try:
        obs, took = await probe(srv, body_regex="^\x00")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert obs.ok, obs.detail  # the regex matched in the first MiB: a clean success
    assert took < 2.0
    # What was sent: the cap plus what socket buffers on both sides held, not a GiB.
    assert srv.sent < http.MAX_BODY + (16 << 20), srv.sent
    assert peak < 4 * http.MAX_BODY + (8 << 20), f"peak {peak >> 20} MiB"


async def test_a_body_regex_beyond_the_cap_fails_as_content(
    hostile: Callable[..., Awaitable[Server]],
) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.stream(w, head(f"Content-Length: {GIB}"), GIB, ZEROS)

    srv = await hostile(handler)
    obs, took = await probe(srv, body_regex="needle-after-a-gigabyte")
    assert not obs.ok and obs.failure is FailureClass.CONTENT, obs
    assert took < 2.0


async def test_a_gzip_bomb_decompresses_only_as_far_as_the_cap(
    hostile: Callable[..., Awaitable[Server]],
) -> None:
    """64 MiB of zeros gzipped to ~64 KB: aiohttp must not inflate it whole."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(comp.compress(bytes(1 << 20)) for _ in range(64)) + comp.flush()

    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        w.write(head("Content-Encoding: gzip", f"Content-Length: {len(bomb)}") + bomb)
        s.sent = len(bomb)
        await w.drain()
        await asyncio.sleep(5)  # keep the connection open; the probe hangs up first

    srv = await hostile(handler)
    tracemalloc.start()
    try:
        obs, took = await probe(srv)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert obs.ok, obs.detail
    assert took < 2.0
    assert peak < 32 << 20, f"inflated {peak >> 20} MiB of a 64 MiB bomb"


# ---- slow bodies: the probe's deadline holds ----------------------------------------------


@pytest.mark.parametrize("where", ["headers", "body"])
async def test_a_slow_drip_times_out_within_the_probe_timeout(
    hostile: Callable[..., Awaitable[Server]], where: str
) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        data = head("Content-Length: 100000") if where == "body" else b"HTTP/1.1 200 OK\r\nX: "
        w.write(data)
        for _ in range(200):  # bounded: 200 bytes over 20 s at most
            await asyncio.sleep(0.1)
            w.write(b"a")
            s.sent += 1
            await w.drain()

    srv = await hostile(handler)
    obs, took = await probe(srv, timeout=1.0)
    assert not obs.ok and obs.failure is FailureClass.TIMEOUT, obs
    assert took < 1.5, took


# ---- invalid framing and encodings: a clean protocol failure -------------------------------

INVALID = {
    "chunk size not hex": head("Transfer-Encoding: chunked") + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk longer than said": head("Transfer-Encoding: chunked") + b"2\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": head("Transfer-Encoding: chunked") + b"f" * 40 + b"\r\nx\r\n",
    "gzip that is not": head("Content-Encoding: gzip", "Content-Length: 14") + b"this is no gz!",
    "deflate that is not": head("Content-Encoding: deflate", "Content-Length: 4")
    + b"\xff\xfe\xfd\xfc",
    "body cut short": head("Content-Length: 100") + b"only this",
    "both lengths": head("Content-Length: 5", "Transfer-Encoding: chunked")
    + b"5\r\nhello\r\n0\r\n\r\n",
    "two content lengths": head("Content-Length: 5", "Content-Length: 6") + b"hello!",
    "negative length": head("Content-Length: -1") + b"x",
    "status not a number": b"HTTP/1.1 2xx OK\r\nContent-Length: 0\r\n\r\n",
    "not HTTP at all": bytes(range(256)) * 4,
    "100 KB header": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"a" * 100_000
    + b"\r\nContent-Length: 0\r\n\r\n",
    "10,000 headers": b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 10_000 + b"Content-Length: 0\r\n\r\n",
    "NUL in header": b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(INVALID))
async def test_invalid_responses_fail_cleanly(
    hostile: Callable[..., Awaitable[Server]], case: str
) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        w.write(INVALID[case])
        s.sent = len(INVALID[case])
        await w.drain()
        await asyncio.sleep(0.2)  # then close: some cases only show at EOF

    srv = await hostile(handler)
    obs, took = await probe(srv, timeout=2.0)
    assert not obs.ok, f"{case}: accepted as {obs.detail}"
    assert obs.failure is FailureClass.PROTOCOL, f"{case}: {obs.failure} {obs.detail}"
    assert took < 2.0


async def test_an_unknown_content_encoding_is_read_as_is(
    hostile: Callable[..., Awaitable[Server]],
) -> None:
    """aiohttp leaves encodings it does not know alone: the bytes go to the regex undecoded."""

    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        w.write(head("Content-Encoding: x-rot13", "Content-Length: 7") + b"uryyb!!")
        await w.drain()

    srv = await hostile(handler)
    obs, _ = await probe(srv, body_regex="hello")
    assert not obs.ok and obs.failure is FailureClass.CONTENT, obs
