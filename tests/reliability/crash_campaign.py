"""A crash campaign: SIGKILL `nocd run` at random points during an outage storm, then audit.

The daemon runs as a separate process against fakes served from this process on 127.0.0.1:
the ticket webhook receiver and the Twilio REST fake (`paging.provider.api_base_url`). Sites
go down one after another while the daemon is killed and restarted, so kills land in every
phase: start-up, recovery, incident opening, ticket delivery, Twilio sends in flight. A
final run lets the daemon finish; then the store and the fakes are audited:

- lost pages: an (incident, channel) that should page and got no call/SMS created;
- duplicate pages: one outbox key with more than one call/SMS created at Twilio;
- misattributed pages: a page recorded as sent with a call/SMS made for another page;
- duplicate tickets: more than one incident per outage or more than one create key per
  incident at the help desk (repeats of the same key are harmless: the sink dedups them);
- `PRAGMA integrity_check`.

Run from the command line (`python -m tests.reliability.crash_campaign --kills 1000`) or
from the CI test. Most kills use a fork server (tests/reliability/zygote.py) so a cycle is
not spent importing; every `cold_every`-th cycle and the final run start cold with
`python -m nocd run -c FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.twilio_fake import FakeTwilio, Resource
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
SID = "AC" + "0" * 31 + "7"
TOKEN = "crash-campaign-twilio-token"
HOOK_KEY = "crash-campaign-hook-key"
PUBLIC = "https://noc.example.com"
ALICE = "+15550101"
_KEY_IN_URL = re.compile(r"/twilio/(?:voice|status)/(.+)$")


class SlowTwilio(FakeTwilio):
    """The Twilio fake, answering a create only `latency` s after making the call/SMS.

    Real API calls take a few hundred milliseconds; a kill in that window leaves a send
    that happened but was never confirmed: the in-doubt case the pager must reconcile.
    """

    latency = 0.3

    async def _create(self, request: web.Request, kind: str) -> web.StreamResponse:
        resp = await super()._create(request, kind)
        await asyncio.sleep(self.latency)
        return resp


class CountingReceiver(WebhookReceiver):
    """The webhook receiver, also counting every accepted delivery per idempotency key."""

    latency = 0.1

    def __init__(self, secret: bytes) -> None:
        super().__init__(secret)
        self.deliveries: Counter[str] = Counter()
        self.creates: dict[int, set[str]] = defaultdict(set)  # incident id → create keys

    async def handle(self, request: web.Request) -> web.Response:
        """Record, then answer like the plain receiver."""
        resp = await super().handle(request)
        await asyncio.sleep(self.latency)  # a kill here leaves a delivered op in doubt
        if resp.status == 201:
            body = json.loads(await request.read())
            key = request.headers.get("X-Nocd-Idempotency-Key", "")
            self.deliveries[key] += 1
            if body.get("action") == "create":
                self.creates[int(body["incident"]["id"])].add(key)
        return resp


@dataclass
class Report:
    """What a campaign tried and found."""

    kills: int = 0
    cold_kills: int = 0
    sites: int = 0
    incidents: int = 0
    pages_expected: int = 0
    pages_lost: int = 0
    pages_duplicated: int = 0
    pages_misattributed: int = 0
    tickets_duplicated: int = 0
    incidents_duplicated: int = 0
    incidents_resolved: int = 0
    ticket_creates_missing: int = 0
    repeated_ticket_deliveries: int = 0
    twilio_creates: int = 0
    deliveries_in_doubt: int = 0
    pages_reconciled: int = 0
    integrity: str = ""
    final_exit: int | None = None
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing doubled, database intact, clean final exit."""
        return (
            self.pages_lost == 0
            and self.pages_duplicated == 0
            and self.pages_misattributed == 0
            and self.tickets_duplicated == 0
            and self.incidents_duplicated == 0
            and self.ticket_creates_missing == 0
            and self.integrity == "ok"
            and self.final_exit == 0
        )


def config_text(work: Path, listen: int, targets: list[int], hook: str, twilio: str) -> str:
    """A daemon config: one site and one TCP check per target port, webhook tickets, Twilio."""
    sites = "\n".join(
        f"  site-{i:03d}: {{name: Site {i}, timezone: UTC}}" for i in range(len(targets))
    )
    checks = "\n".join(
        f"""  - name: pbx-{i:03d}
    type: tcp
    target: "127.0.0.1:{port}"
    site: site-{i:03d}
    interval: 1s
    timeout: 500ms
    retries: 1
    on_failure: critical"""
        for i, port in enumerate(targets)
    )
    return f"""
daemon:
  listen: 127.0.0.1:{listen}
  public_url: {PUBLIC}
  state_path: {work}/state/nocd.db
  log_format: json
  log_level: info
  shutdown_grace: 1s
sites:
{sites}
checks:
{checks}
tickets:
  sinks:
    desk:
      type: webhook
      url: {hook}
      secret: ${{NOCD_CRASH_HOOK_KEY}}
      timeout: 2s
paging:
  provider:
    type: twilio
    account_sid: ${{NOCD_CRASH_TWILIO_SID}}
    auth_token: ${{NOCD_CRASH_TWILIO_TOKEN}}
    from_number: "+15550100"
    api_base_url: {twilio}
    timeout: 2s
  people:
    alice: {{name: Alice Example, phone: "{ALICE}"}}
  escalation_policies:
    noc:
      steps:
        - {{people: [alice], channels: [voice, sms], wait: 1h}}
  routing:
    default: {{support_hours: "24x7", page_in_hours: true, escalation_policy: noc}}
  rate_limits: {{voice: 100000, sms: 100000, bundle_window: 0s}}
"""


def daemon_env() -> dict[str, str]:
    """The environment of a daemon under test (secrets by env; no systemd)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env.update(
        NOCD_CRASH_TWILIO_SID=SID,
        NOCD_CRASH_TWILIO_TOKEN=TOKEN,
        NOCD_CRASH_HOOK_KEY=HOOK_KEY,
        PYTHONPATH=str(ROOT),
    )
    return env


class Zygote:
    """Client of tests/reliability/zygote.py."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the fork server and wait until it has imported nocd."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.zygote",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=daemon_env(),
        )
        assert await self._line(60.0) == "ready"

    async def _line(self, limit: float = 10.0) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        async with asyncio.timeout(limit):
            raw = await self._proc.stdout.readline()
        if not raw:
            raise RuntimeError("the fork server exited")
        return raw.decode().strip()

    async def _ask(self, line: str) -> str:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()
        return await self._line()

    async def spawn(self, config: Path, log: Path) -> int:
        """Fork a `nocd run -c config` child; returns its pid."""
        return int(await self._ask(f"spawn {config} {log}"))

    async def reap(self, pid: int) -> int:
        """Wait for the child; returns its exit code or -signal."""
        return int(await self._ask(f"reap {pid}"))

    async def stop(self) -> None:
        """Stop the fork server."""
        if self._proc is None:
            return
        if self._proc.returncode is None and self._proc.stdin is not None:
            self._proc.stdin.write(b"quit\n")
            await self._proc.stdin.drain()
            try:
                async with asyncio.timeout(10):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


class Targets:
    """One TCP listener per site on 127.0.0.1; taking one down makes its check fail (refused).

    A down site's port stays bound (not listening): connects are refused, and no other
    socket can take the port — neither a test server nor an outgoing connection whose
    ephemeral port happens to match (a TCP self-connect would "recover" the site).
    """

    def __init__(self) -> None:
        self.servers: list[asyncio.Server | None] = []
        self.ports: list[int] = []
        self.held: list[socket.socket] = []

    async def start(self, n: int) -> None:
        """Open `n` listeners."""

        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        for _ in range(n):
            srv = await asyncio.start_server(accept, "127.0.0.1", 0, reuse_address=True)
            self.servers.append(srv)
            self.ports.append(int(srv.sockets[0].getsockname()[1]))

    async def down(self, i: int) -> None:
        """Take site `i` down: stop listening, keep the port."""
        srv = self.servers[i]
        if srv is None:
            return
        srv.close()
        await srv.wait_closed()
        self.servers[i] = None
        hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind(("127.0.0.1", self.ports[i]))
        self.held.append(hold)

    async def close(self) -> None:
        """Take every site down."""
        for i in range(len(self.servers)):
            await self.down(i)

    def release(self) -> None:
        """Free the held ports."""
        for hold in self.held:
            hold.close()
        self.held.clear()


def _sql(db: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only query against the daemon's database (WAL allows a concurrent reader)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return list(conn.execute(query, args).fetchall())
    finally:
        conn.close()


def _settled(db: Path, sites: int) -> bool:
    """Every site has its incident, every step fired, nothing left to deliver."""
    try:
        incidents = _sql(db, "SELECT COUNT(*) FROM incidents")[0][0]
        busy = _sql(db, "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','sending')")[0][0]
        queued = _sql(db, "SELECT COUNT(*) FROM paging_queue")[0][0]
        due = _sql(db, "SELECT COUNT(*) FROM paging_escalations WHERE step = 0")[0][0]
    except sqlite3.Error:
        return False
    return bool(incidents >= sites and busy == 0 and queued == 0 and due == 0)


def page_key_of(r: Resource) -> str | None:
    """The nocd page key a call/SMS was made for (from its webhook URLs)."""
    for name in ("Url", "StatusCallback"):
        m = _KEY_IN_URL.search(str(r.params.get(name, "")))
        if m:
            return m.group(1)
    return None


def audit(db: Path, sites: int, fake: FakeTwilio, desk: CountingReceiver, report: Report) -> None:
    """Fill `report` from the store and the fakes' records."""
    report.sites = sites
    conn = sqlite3.connect(str(db))
    try:
        report.integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        incidents = conn.execute(
            "SELECT id, group_key, opened_at, resolved_at FROM incidents ORDER BY id"
        ).fetchall()
        tickets = Counter(r[0] for r in conn.execute("SELECT incident_id FROM tickets"))
        report.deliveries_in_doubt = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE attempts > 1"
        ).fetchone()[0]
        report.pages_reconciled = conn.execute(
            "SELECT COUNT(DISTINCT json_extract(data, '$.key')) FROM timeline "
            "WHERE kind = 'delivery' AND text LIKE 'reconciled:%'"
        ).fetchone()[0]
        links = conn.execute(
            "SELECT x.incident_id, p.key, p.channel, p.provider_id FROM paging_page_incidents x "
            "JOIN paging_pages p ON p.key = x.key"
        ).fetchall()
    finally:
        conn.close()
    report.incidents = len(incidents)
    groups = Counter(r[1] for r in incidents)
    report.incidents_resolved = sum(1 for r in incidents if r[3] is not None)
    # Two incidents of one outage group whose lifetimes overlap are one outage counted twice.
    by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, g, opened, resolved in incidents:
        by_group[g].append((opened, resolved if resolved is not None else float("inf")))
    for g, spans in by_group.items():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            if start < end:
                report.incidents_duplicated += 1
                report.details.append(f"group {g}: overlapping incidents")
    report.details += [f"group {g} has {n} incidents" for g, n in groups.items() if n > 1]
    if len(groups) != sites:
        report.details.append(f"{len(groups)} outage groups for {sites} sites")

    created: dict[str, list[Resource]] = defaultdict(list)
    for r in [*fake.calls.values(), *fake.messages.values()]:
        key = page_key_of(r)
        created[key or f"?{r.sid}"].append(r)
    report.twilio_creates = len(fake.calls) + len(fake.messages)
    for key, rs in created.items():
        if len(rs) > 1:
            report.pages_duplicated += len(rs) - 1
            report.details.append(f"page {key}: {len(rs)} sends {[r.sid for r in rs]}")
    sid_key = {r.sid: page_key_of(r) for rs in created.values() for r in rs}
    reached: set[tuple[int, str]] = set()
    for inc_id, key, channel, provider_id in links:
        if created.get(key):
            reached.add((inc_id, channel))
        if provider_id is not None and provider_id in sid_key and sid_key[provider_id] != key:
            report.pages_misattributed += 1
            report.details.append(f"page {key} recorded as {provider_id} of {sid_key[provider_id]}")
    for inc_id, *_ in incidents:
        for channel in ("voice", "sms"):
            report.pages_expected += 1
            if (inc_id, channel) not in reached:
                report.pages_lost += 1
                report.details.append(f"incident {inc_id}: no {channel} page reached Twilio")
        n_tickets = tickets.get(inc_id, 0)
        keys = desk.creates.get(inc_id, set())
        if n_tickets > 1 or len(keys) > 1:
            report.tickets_duplicated += max(n_tickets, len(keys)) - 1
            report.details.append(f"incident {inc_id}: {n_tickets} tickets, create keys {keys}")
        if n_tickets == 0 or not keys:
            report.ticket_creates_missing += 1
            report.details.append(f"incident {inc_id}: ticket {n_tickets}, desk creates {keys}")
    report.repeated_ticket_deliveries = sum(n - 1 for n in desk.deliveries.values())


def cold_start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m nocd run -c cfg`, logging to `log` (a file: a full pipe must never block)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nocd", "run", "-c", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=daemon_env(),
        )


async def _ready(port: int, end: float) -> bool:
    """Wait until the daemon's /readyz answers 200 (signal handlers are installed by then)."""
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    return False


async def _wait_exit(proc: subprocess.Popen[bytes], limit: float) -> int | None:
    end = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < end:
        await asyncio.sleep(0.05)
    return proc.poll()


async def run_campaign(
    work: Path,
    kills: int,
    seed: int = 1,
    sites: int = 40,
    min_up: float = 0.2,
    max_up: float = 1.5,
    cold_every: int = 10,
    progress: bool = False,
) -> Report:
    """Kill the daemon `kills` times at random points, let it finish, audit everything."""
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    os.makedirs(work, exist_ok=True)
    log = work / "nocd.log"
    targets = Targets()
    await targets.start(sites)
    desk = CountingReceiver(HOOK_KEY.encode())
    hook = await desk.start()
    zygote = Zygote()
    async with SlowTwilio(SID, TOKEN, public_url=PUBLIC) as fake:
        cfg = work / "nocd.yaml"
        listen = free_port()
        cfg.write_text(config_text(work, listen, targets.ports, hook, fake.base_url))
        await zygote.start()
        try:
            # Sites fail one after another until 80 % of the kills are done, the rest at once.
            down_at = sorted(rng.randrange(max(1, kills * 4 // 5)) for _ in range(sites))
            nxt = 0
            for i in range(kills):
                while nxt < sites and down_at[nxt] <= i:
                    await targets.down(nxt)
                    nxt += 1
                up = rng.uniform(min_up, max_up)
                if cold_every and i % cold_every == cold_every - 1:
                    # A cold start: kill while it imports, opens the store or runs.
                    proc = cold_start(cfg, log)
                    await asyncio.sleep(up + rng.uniform(0.0, 2.5))
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    report.cold_kills += 1
                else:
                    pid = await zygote.spawn(cfg, log)
                    await asyncio.sleep(up)
                    os.kill(pid, signal.SIGKILL)
                    status = await zygote.reap(pid)
                    if status != -signal.SIGKILL:
                        report.details.append(f"kill {i}: the daemon had exited with {status}")
                report.kills += 1
                if progress and report.kills % 50 == 0:
                    print(f"{report.kills} kills, {nxt} sites down", file=sys.stderr, flush=True)
            await targets.close()
            # The last run is left to finish, then stopped cleanly.
            proc = cold_start(cfg, log)
            db = work / "state" / "nocd.db"
            end = time.monotonic() + 90.0
            if not await _ready(listen, end):
                report.details.append("the final run never became ready")
            stable = 0
            while stable < 4 and time.monotonic() < end:
                stable = stable + 1 if _settled(db, sites) else 0
                await asyncio.sleep(0.5)
            if stable < 4:
                report.details.append("the final run did not settle within 90 s")
            proc.send_signal(signal.SIGTERM)
            report.final_exit = await _wait_exit(proc, 15.0)
            if report.final_exit is None:
                proc.kill()
                proc.wait()
            audit(db, sites, fake, desk, report)
        finally:
            await zygote.stop()
            await desk.stop()
            await targets.close()
            targets.release()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main() -> int:
    """CLI: run a campaign and print the report as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--kills", type=int, default=int(os.environ.get("NOCD_CRASH_KILLS", "1000")))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nocd-crash-") as tmp:
        work = args.work or Path(tmp)
        report = asyncio.run(run_campaign(work, args.kills, args.seed, args.sites, progress=True))
    out = asdict(report)
    out["clean"] = report.clean
    out["machine"] = f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs"
    out["python"] = platform.python_version()
    print(json.dumps(out, indent=2))
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
