"""http, tcp and tls_cert checks against real local servers (aiohttp, raw asyncio, TLS)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from checks import http, tcp, tls_cert
from checks.resources import close_all
from nocd.model import FailureClass, Observation, Severity
from tests.peers import free_port

# ---- certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A throwaway CA and a way to issue server certificates for 127.0.0.1."""

    dir: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    def server_context(self, days_left: float, name: str = "server") -> ssl.SSLContext:
        """A server TLS context whose certificate expires `days_left` days from now."""
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nocd test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=500))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Pki(d, key, ca)


# ---- servers --------------------------------------------------------------------------


def _app() -> web.Application:
    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="status: healthy")

    async def status(r: web.Request) -> web.Response:
        return web.Response(status=int(r.match_info["code"]), text="nope")

    async def redirect(_r: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(_r: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(_r: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(_r: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(_r)
        for _ in range(10):  # arrives in several chunks
            await resp.write(b"x" * 40_000)
            await asyncio.sleep(0)
        await resp.write(b"MARKER")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.add_routes(
        [
            web.get("/ok", ok),
            web.get("/big", big),
            web.get("/status/{code}", status),
            web.get("/redirect", redirect),
            web.get("/loop", loop),
            web.get("/slow", slow),
        ]
    )
    return app


Starter = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Starter]:
    """Start the test app on 127.0.0.1 (optionally TLS); returns the port."""
    runners: list[web.AppRunner] = []

    async def start(ssl_context: ssl.SSLContext | None = None) -> int:
        runner = web.AppRunner(_app(), shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        runners.append(runner)
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield start
    await close_all()  # the checks' shared HTTP session, before the servers go
    for r in runners:
        await r.cleanup()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes | None], Awaitable[int]]]:
    """A raw TCP server that sends `reply` and closes, or (None) accepts and stays silent."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(reply: bytes | None) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            if reply is None:
                return
            await reader.read(1024)
            writer.write(reply)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    await close_all()
    for w in writers:
        w.close()
    for s in servers:
        s.close()
        await s.wait_closed()


def deadline(seconds: float = 3.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def http_check(url: str, **kw: object) -> http.Config:
    return http.Config.model_validate({"name": "web", "type": "http", "target": url, **kw})


async def probe_http(url: str, timeout: float = 3.0, **kw: object) -> Observation:
    return await http.probe(http_check(url, timeout=timeout, **kw), deadline(timeout))


# ---- http -----------------------------------------------------------------------------


async def test_http_ok(serve: Starter) -> None:
    port = await serve()
    obs = await probe_http(f"http://127.0.0.1:{port}/ok")
    assert obs.ok and obs.values["status"] == 200 and obs.detail == "HTTP 200"
    assert 0 < obs.duration_s < 3


@pytest.mark.parametrize(
    ("code", "failure", "severity"),
    [
        (500, FailureClass.SERVER_ERROR, Severity.CRITICAL),
        (503, FailureClass.OVERLOADED, Severity.DEGRADED),  # maintenance/overload: degraded
        (404, FailureClass.BAD_STATUS, Severity.CRITICAL),
        (401, FailureClass.AUTH, Severity.CRITICAL),
    ],
)
async def test_http_unexpected_status(
    serve: Starter, code: int, failure: FailureClass, severity: Severity
) -> None:
    port = await serve()
    url = f"http://127.0.0.1:{port}/status/{code}"
    obs = await probe_http(url)
    assert (obs.ok, obs.failure, obs.values["status"]) == (False, failure, code)
    assert http.evaluate(obs, http_check(url)).severity is severity


async def test_http_custom_status_set(serve: Starter) -> None:
    port = await serve()
    obs = await probe_http(f"http://127.0.0.1:{port}/status/404", expect_status=[404])
    assert obs.ok


async def test_http_body_regex(serve: Starter) -> None:
    port = await serve()
    url = f"http://127.0.0.1:{port}/ok"
    assert (await probe_http(url, body_regex=r"status: (healthy|ok)")).ok
    obs = await probe_http(url, body_regex=r"status: down")
    assert (obs.ok, obs.failure) == (False, FailureClass.CONTENT)
    assert obs.detail == "body does not match /status: down/"


async def test_http_body_regex_sees_the_whole_body(serve: Starter) -> None:
    # Regression: only the first chunk was matched, so a marker near the end was missed.
    port = await serve()
    assert (await probe_http(f"http://127.0.0.1:{port}/big", body_regex="MARKER$")).ok


async def test_http_redirect_policy(serve: Starter) -> None:
    port = await serve()
    url = f"http://127.0.0.1:{port}/redirect"
    followed = await probe_http(url)
    assert followed.ok and str(followed.values["url"]).endswith("/ok")
    not_followed = await probe_http(url, follow_redirects=False)
    assert (not_followed.ok, not_followed.values["status"]) == (False, 302)
    assert (await probe_http(url, follow_redirects=False, expect_status=[302])).ok
    looping = await probe_http(f"http://127.0.0.1:{port}/loop", max_redirects=3)
    assert (looping.ok, looping.failure, looping.detail) == (
        False,
        FailureClass.BAD_STATUS,
        "too many redirects",
    )


async def test_http_tls_verification(serve: Starter, pki: Pki) -> None:
    port = await serve(pki.server_context(days_left=90))
    url = f"https://127.0.0.1:{port}/ok"
    unknown_ca = await probe_http(url)
    assert (unknown_ca.ok, unknown_ca.failure) == (False, FailureClass.TLS)
    assert "certificate verify failed" in unknown_ca.detail
    assert (await probe_http(url, ca_file=pki.ca_file)).ok
    assert (await probe_http(url, tls_verify=False)).ok


async def test_http_refused() -> None:
    obs = await probe_http(f"http://127.0.0.1:{free_port()}/")
    assert (obs.ok, obs.failure) == (False, FailureClass.REFUSED)


async def test_http_timeout(serve: Starter) -> None:
    port = await serve()
    obs = await probe_http(f"http://127.0.0.1:{port}/slow", timeout=0.3)
    assert (obs.ok, obs.failure) == (False, FailureClass.TIMEOUT)
    assert 0.25 <= obs.duration_s < 3


@pytest.mark.parametrize(
    "reply",
    [
        b"HELLO THERE\r\n\r\n",  # not HTTP at all
        b"HTTP/1.1 abc Broken\r\n\r\n",  # a non-numeric status
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",  # body cut short
        b"",  # closes without a word
    ],
)
async def test_http_garbage_response(
    raw_server: Callable[[bytes | None], Awaitable[int]], reply: bytes
) -> None:
    port = await raw_server(reply)
    obs = await probe_http(f"http://127.0.0.1:{port}/")
    assert (obs.ok, obs.failure) == (False, FailureClass.PROTOCOL), obs.detail


async def test_http_slow_is_degraded(serve: Starter) -> None:
    port = await serve()
    cfg = http_check(f"http://127.0.0.1:{port}/ok", degraded_after="1ms")
    obs = Observation.success("HTTP 200", 0.5, status=200)
    verdict = http.evaluate(obs, cfg)
    assert (verdict.severity, verdict.failure) == (Severity.DEGRADED, FailureClass.SLOW)
    assert verdict.reason == "response took 500 ms (limit 1 ms)"


def test_http_on_failure_override() -> None:
    cfg = http_check("http://127.0.0.1:1/", on_failure="low")
    obs = Observation.failed(FailureClass.REFUSED, "refused")
    assert http.evaluate(obs, cfg).severity is Severity.LOW


# ---- tcp ------------------------------------------------------------------------------


def tcp_check(target: str, **kw: object) -> tcp.Config:
    return tcp.Config.model_validate({"name": "sock", "type": "tcp", "target": target, **kw})


async def test_tcp_connect_ok_and_refused(serve: Starter) -> None:
    port = await serve()
    obs = await tcp.probe(tcp_check(f"127.0.0.1:{port}"), deadline())
    assert obs.ok and obs.values["address"] == f"127.0.0.1:{port}"
    refused = await tcp.probe(tcp_check(f"127.0.0.1:{free_port()}"), deadline())
    assert (refused.ok, refused.failure) == (False, FailureClass.REFUSED)
    assert tcp.evaluate(refused, tcp_check("127.0.0.1:1")).severity is Severity.CRITICAL


async def test_tcp_tls(serve: Starter, pki: Pki) -> None:
    tls_port = await serve(pki.server_context(days_left=90))
    target = f"127.0.0.1:{tls_port}"
    assert (await tcp.probe(tcp_check(target, tls=True, ca_file=pki.ca_file), deadline())).ok
    assert (await tcp.probe(tcp_check(target, tls=True, tls_verify=False), deadline())).ok
    bad = await tcp.probe(tcp_check(target, tls=True), deadline())
    assert (bad.ok, bad.failure) == (False, FailureClass.TLS)
    wrong_name = await tcp.probe(
        tcp_check(target, tls=True, ca_file=pki.ca_file, server_name="pbx.example.com"),
        deadline(),
    )
    assert (wrong_name.ok, wrong_name.failure) == (False, FailureClass.TLS)
    plain_port = await serve()
    plain = await tcp.probe(tcp_check(f"127.0.0.1:{plain_port}", tls=True), deadline())
    assert (plain.ok, plain.failure) == (False, FailureClass.TLS)


async def test_tcp_tls_handshake_timeout(
    raw_server: Callable[[bytes | None], Awaitable[int]],
) -> None:
    port = await raw_server(None)  # accepts, never answers the ClientHello
    obs = await tcp.probe(tcp_check(f"127.0.0.1:{port}", tls=True, timeout=0.3), deadline(0.3))
    assert (obs.ok, obs.failure) == (False, FailureClass.TIMEOUT)


# ---- tls_cert -------------------------------------------------------------------------


def cert_check(port: int, **kw: object) -> tls_cert.Config:
    return tls_cert.Config.model_validate(
        {"name": "cert", "type": "tls_cert", "target": f"127.0.0.1:{port}", **kw}
    )


@pytest.mark.parametrize(
    ("days", "severity"),
    [
        (60, Severity.OK),
        (14, Severity.DEGRADED),  # under degraded_days (21)
        (3, Severity.CRITICAL),  # under critical_days (7)
    ],
)
async def test_tls_cert_days_left(serve: Starter, pki: Pki, days: int, severity: Severity) -> None:
    port = await serve(pki.server_context(days_left=days, name=f"d{days}"))
    cfg = cert_check(port, ca_file=pki.ca_file)
    obs = await tls_cert.probe(cfg, deadline())
    assert obs.ok, obs.detail
    assert obs.values["days_left"] == pytest.approx(days, abs=0.01)
    verdict = tls_cert.evaluate(obs, cfg)
    assert verdict.severity is severity
    if severity is not Severity.OK:
        assert verdict.failure is FailureClass.EXPIRING
        assert verdict.reason == f"certificate expires in {days:.1f} days"


async def test_tls_cert_custom_thresholds(serve: Starter, pki: Pki) -> None:
    port = await serve(pki.server_context(days_left=45, name="d45"))
    cfg = cert_check(port, ca_file=pki.ca_file, degraded_days=60, critical_days=50)
    verdict = tls_cert.evaluate(await tls_cert.probe(cfg, deadline()), cfg)
    assert verdict.severity is Severity.CRITICAL


async def test_tls_cert_expired(serve: Starter, pki: Pki) -> None:
    port = await serve(pki.server_context(days_left=-2, name="expired"))
    verified = await tls_cert.probe(cert_check(port, ca_file=pki.ca_file), deadline())
    assert (verified.ok, verified.failure) == (False, FailureClass.TLS)
    assert "expired" in verified.detail
    # With verification off nocd still reads the date (from the DER) and calls it expired.
    cfg = cert_check(port, tls_verify=False)
    obs = await tls_cert.probe(cfg, deadline())
    assert obs.ok and obs.values["days_left"] == pytest.approx(-2, abs=0.01)
    verdict = tls_cert.evaluate(obs, cfg)
    assert (verdict.severity, verdict.reason) == (Severity.CRITICAL, "certificate expired")


async def test_tls_cert_unknown_ca_and_refused(serve: Starter, pki: Pki) -> None:
    port = await serve(pki.server_context(days_left=90, name="d90"))
    obs = await tls_cert.probe(cert_check(port), deadline())
    assert (obs.ok, obs.failure) == (False, FailureClass.TLS)
    refused = await tls_cert.probe(cert_check(free_port()), deadline())
    assert (refused.ok, refused.failure) == (False, FailureClass.REFUSED)
