"""Secrets never leak: not in logs, errors, CLI output, the API, /metrics or the dashboard.

`nocd run` runs as a subprocess with a Twilio account SID and auth token, an API token, an
SMTP password, SNMPv3 auth/priv keys and a webhook HMAC key set to distinctive values, from
the environment and from `file:` references. It is then made to fail every way that writes
errors: failing checks (TCP refused, SNMPv3 to a closed port), Twilio answering 500 before a
page goes through, a ticket webhook answering errors, an SMTP server refusing the login, config
reloads with broken secret files and with a token pasted in clear. Every log line, every HTTP
response (headers and body) and the output of `nocd check-config` and `nocd probe --debug` are
searched for each secret, raw and in the encodings it travels in (Basic auth, AUTH PLAIN).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.fakes.twilio_fake import FakeTwilio
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.tickets_world import MailServer
from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
SID = "AC5ec7e7" + "0" * 23 + "1a2b"
SECRETS = {
    "twilio_sid": SID,
    "twilio_token": "twTOKEN-7f3a9c1e-LEAKCHECK",
    "api_token": "apiTOKEN-5d2b8e4f-LEAKCHECK-0123",
    "smtp_password": "smtpPASS-9a1c3e5g-LEAKCHECK",
    "snmp_auth": "snmpAUTH-2b4d6f8h-LEAKCHECK",
    "snmp_priv": "snmpPRIV-1a3c5e7g-LEAKCHECK",
    "hook_key": "hookKEY-8c6e4a2b-LEAKCHECK",
}


def forms(value: str) -> list[str]:
    """A secret as it could appear: raw, URL-encoded, and base64 alone."""
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


def needles() -> dict[str, str]:
    """Every string that must never be seen, named for the failure message."""
    out = {f"{name} ({i})": f for name, v in SECRETS.items() for i, f in enumerate(forms(v))}
    basic = f"{SID}:{SECRETS['twilio_token']}".encode()
    out["twilio basic auth"] = base64.b64encode(basic).decode()
    plain = f"\0nocd\0{SECRETS['smtp_password']}".encode()
    out["smtp AUTH PLAIN"] = base64.b64encode(plain).decode()
    return out


def leaks(text: str) -> list[str]:
    """The names of the secrets found in `text`."""
    return [name for name, n in needles().items() if n in text]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


def config(
    tmp: Path, listen: int, twilio: str, hook: str, smtp: int, token_ref: str | None = None
) -> str:
    """The daemon config; secrets by env (`${…}`) and by file (`file:`)."""
    token = token_ref or "${NOCD_LEAK_TWILIO_TOKEN}"
    return f"""
daemon:
  listen: 127.0.0.1:{listen}
  public_url: https://noc.example.com
  state_path: {tmp}/state/nocd.db
  log_format: json
  log_level: debug
  shutdown_grace: 1s
sites:
  main-street: {{name: Main Street, timezone: UTC}}
checks:
  - name: main-street-pbx
    type: tcp
    target: "127.0.0.1:{closed_port()}"
    site: main-street
    interval: 1s
    timeout: 500ms
    retries: 1
    on_failure: critical
  - name: main-street-ups
    type: snmp
    target: "127.0.0.1:{closed_port()}"
    site: main-street
    version: "3"
    v3:
      user: nocd
      auth_protocol: sha
      auth_key: file:{tmp}/snmp-auth
      priv_protocol: aes
      priv_key: file:{tmp}/snmp-priv
    interval: 1s
    timeout: 500ms
    retries: 1
api:
  tokens:
    - {{name: ops, token: "file:{tmp}/api-token", scopes: [read, write]}}
tickets:
  sinks:
    desk:
      type: webhook
      url: {hook}
      secret: ${{NOCD_LEAK_HOOK_KEY}}
      timeout: 2s
    mail:
      type: email
      host: 127.0.0.1
      port: {smtp}
      security: none
      username: nocd
      password: ${{NOCD_LEAK_SMTP_PASSWORD}}
      from_address: nocd@example.com
      to: [desk@example.com]
      timeout: 2s
paging:
  provider:
    type: twilio
    account_sid: file:{tmp}/twilio-sid
    auth_token: {token}
    from_number: "+15550100"
    api_base_url: {twilio}
    timeout: 2s
  people:
    alice: {{name: Alice Example, phone: "+15550101"}}
  escalation_policies:
    noc:
      steps:
        - {{people: [alice], channels: [voice, sms], wait: 1h}}
  routing:
    default: {{support_hours: "24x7", page_in_hours: true, escalation_policy: noc}}
  rate_limits: {{bundle_window: 0s}}
"""


def write_secret_files(tmp: Path) -> None:
    for name, key in (
        ("snmp-auth", "snmp_auth"),
        ("snmp-priv", "snmp_priv"),
        ("api-token", "api_token"),
        ("twilio-sid", "twilio_sid"),
    ):
        (tmp / name).write_text(SECRETS[key] + "\n")
        (tmp / name).chmod(0o600)


def env() -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    e.update(
        NOCD_LEAK_TWILIO_TOKEN=SECRETS["twilio_token"],
        NOCD_LEAK_HOOK_KEY=SECRETS["hook_key"],
        NOCD_LEAK_SMTP_PASSWORD=SECRETS["smtp_password"],
        PYTHONPATH=str(ROOT),
    )
    return e


def cli(*args: str) -> str:
    """Run `nocd ARGS`; returns stdout and stderr together."""
    p = subprocess.run(
        [sys.executable, "-m", "nocd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(),
        timeout=60,
    )
    return f"$ nocd {' '.join(args)} -> {p.returncode}\n{p.stdout}{p.stderr}"


def spawn(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    """`nocd run -c cfg` with stdout and stderr into `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nocd", "run", "-c", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env(),
        )


async def until(pred: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


class Peers:
    """The far sides: Twilio (500 at first), a ticket desk answering errors, a strict SMTP."""

    def __init__(self) -> None:
        self.twilio = FakeTwilio(SID, SECRETS["twilio_token"], public_url="https://noc.example.com")
        self.desk = WebhookReceiver(SECRETS["hook_key"].encode())
        self.mail = MailServer(credentials=("nocd", "another-password"))


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    p = Peers()
    await p.twilio.__aenter__()
    p.twilio.set_mode("500", 2)
    p.desk.fail_next = [(500, None), (400, None), (503, "1")] * 3
    await p.desk.start()
    await p.mail.start()
    yield p
    await p.mail.stop()
    await p.desk.stop()
    await p.twilio.__aexit__()


async def grab(
    http: aiohttp.ClientSession, method: str, url: str, out: list[str], **kw: object
) -> tuple[int, str]:
    """Request `url`; append the status, headers and body to `out`."""
    async with http.request(method, url, allow_redirects=False, **kw) as resp:  # type: ignore[arg-type]
        body = await resp.text()
        out.append(f"{method} {url} -> {resp.status}\n{dict(resp.headers)}\n{body}")
        return resp.status, body


async def exercise_http(port: int, out: list[str]) -> None:
    """Every read endpoint, with and without the token, plus the dashboard login."""
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {SECRETS['api_token']}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        for path in ("/metrics", "/healthz", "/readyz", "/status", "/", "/login"):
            await grab(http, "GET", base + path, out)
        api = f"{base}/api/v1"
        status, _ = await grab(http, "GET", f"{api}/incidents", out, headers=auth)
        assert status == 200
        for path in (
            "/openapi.json",
            "/status",
            "/checks",
            "/checks/main-street-pbx",
            "/checks/main-street-ups",
            "/sites",
            "/sites/main-street",
            "/maintenance",
            "/silences",
            "/oncall",
            "/tickets",
        ):
            await grab(http, "GET", api + path, out, headers=auth)
            await grab(http, "GET", api + path, out)  # 401
            await grab(
                http, "GET", api + path, out, headers={"Authorization": "Bearer wrong-token"}
            )
        _, body = await grab(http, "GET", f"{api}/incidents", out, headers=auth)
        for code in re.findall(r'"code":\s*"([A-Z0-9]+)"', body)[:3]:
            await grab(http, "GET", f"{api}/incidents/{code}", out, headers=auth)
            await grab(http, "GET", f"{api}/incidents/{code}/rfo", out, headers=auth)
        # The dashboard: log in with the API token, then read the pages a session sees.
        # Its cookies are Secure (public_url is https): carry them by hand over plain http.
        async with http.get(f"{base}/login") as resp:
            page = await resp.text()
            login_cookie = resp.cookies["nocd_login"].value
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        assert m, page
        jar = {"Cookie": f"nocd_login={login_cookie}"}
        form = {"csrf": m.group(1), "token": SECRETS["api_token"]}
        async with http.post(
            f"{base}/login", data=form, headers=jar, allow_redirects=False
        ) as resp:
            out.append(f"POST /login -> {resp.status}\n{dict(resp.headers)}\n{await resp.text()}")
            assert resp.status == 303, out[-1]
            session = "; ".join(f"{k}={v.value}" for k, v in resp.cookies.items())
        for path in ("/", "/status"):
            status, _ = await grab(http, "GET", base + path, out, headers={"Cookie": session})
            assert status == 200, out[-1]
        form = {"csrf": m.group(1), "token": "not-the-token-" + "x" * 12}
        await grab(http, "POST", f"{base}/login", out, data=form, headers=jar)


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# aiosmtpd drops the server side of a session whose login it refused without closing it;
# that socket (the test's SMTP peer, not nocd's) would otherwise fail the test at GC.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_no_secret_in_logs_errors_cli_api_metrics_or_dashboard(
    tmp_path: Path, peers: Peers
) -> None:
    write_secret_files(tmp_path)
    port = free_port()
    cfg = tmp_path / "nocd.yaml"
    cfg.write_text(config(tmp_path, port, peers.twilio.base_url, peers.desk.url, peers.mail.port))
    seen: list[str] = [cli("check-config", "-c", str(cfg))]
    assert ": OK" in seen[0], seen[0]
    seen.append(cli("probe", "-c", str(cfg), "main-street-ups", "--debug"))

    stderr = tmp_path / "nocd.stderr"
    proc = spawn(cfg, stderr)
    try:
        # Pages go through after Twilio's 500s; both ticket sinks keep failing for a while.
        await until(lambda: len(peers.twilio.calls) >= 1, "a call after Twilio's 500s", 30)
        await until(lambda: peers.desk.attempts >= 3, "ticket webhook errors")
        await until(
            lambda: "ticket:mail" in log_text(stderr) and "will retry" in log_text(stderr),
            "the SMTP login refused",
        )
        await exercise_http(port, seen)

        # Reloads refused: an emptied secret file, an unreadable one, a token in clear.
        api_token = tmp_path / "api-token"
        api_token.write_text("")
        proc.send_signal(signal.SIGHUP)
        await until(lambda: log_text(stderr).count("config reload refused") >= 1, "reload 1")
        api_token.write_bytes(b"\xff\xfe" + SECRETS["api_token"].encode())
        proc.send_signal(signal.SIGHUP)
        await until(lambda: log_text(stderr).count("config reload refused") >= 2, "reload 2")
        write_secret_files(tmp_path)
        (tmp_path / "snmp-priv").unlink()
        proc.send_signal(signal.SIGHUP)
        await until(lambda: log_text(stderr).count("config reload refused") >= 3, "reload 3")
        write_secret_files(tmp_path)
        clear = config(
            tmp_path,
            port,
            peers.twilio.base_url,
            peers.desk.url,
            peers.mail.port,
            token_ref=SECRETS["twilio_token"],
        )
        cfg.write_text(clear)
        proc.send_signal(signal.SIGHUP)
        await until(lambda: log_text(stderr).count("config reload refused") >= 4, "reload 4")
        seen.append(cli("check-config", "-c", str(cfg)))
        await exercise_http(port, seen)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    # check-config on broken references: a missing variable, a missing file, a key in clear.
    broken = cfg.read_text().replace("${NOCD_LEAK_HOOK_KEY}", "${NOCD_LEAK_NOT_SET}")
    broken = broken.replace(f"file:{tmp_path}/snmp-auth", f"file:{tmp_path}/no-such-key")
    bad = tmp_path / "bad.yaml"
    bad.write_text(broken)
    seen.append(cli("check-config", "-c", str(bad)))
    assert "invalid" in seen[-1] and "NOCD_LEAK_NOT_SET" in seen[-1], seen[-1]
    assert "secrets may not be written in clear" in seen[-1], seen[-1]
    seen.append(cli("run", "-c", str(bad)))  # refuses to start, saying why

    logs = log_text(stderr)
    # The exercise happened: errors of every kind were logged …
    for expected in (
        "twilio send failed",
        "ticket:desk",
        "ticket:mail",
        "config reload refused",
        "incident opened",
        "nocd stopped",
    ):
        assert expected in logs, expected
    assert peers.twilio.creates("message"), "no SMS was sent"
    # … and no secret, in any form, appears in any of it.
    everything = {"daemon log": logs, **{f"output {i}": s for i, s in enumerate(seen)}}
    found = {where: leaks(text) for where, text in everything.items() if leaks(text)}
    assert not found, found


def test_the_search_finds_every_form_of_a_secret() -> None:
    """A negative control: the search would notice a leak in any of the forms it checks."""
    token = SECRETS["twilio_token"]
    assert "twilio_token (0)" in leaks(f"error: {token}!")
    assert leaks(f"url=https://x.example.com/?t={quote(SECRETS['api_token'], safe='')}")
    basic = base64.b64encode(f"{SID}:{token}".encode()).decode()
    assert "twilio basic auth" in leaks(f"Authorization: Basic {basic}")
    assert leaks("nothing to see here") == []
