"""Storms: 5,000 registrations of one site lost at once; 200 sites failing one after another.

Run: .venv/bin/python bench/bench_storm.py [--phones 5000] [--sites 200] [--spread 50]
         [--parts site,sites]

Real time, short intervals (no fake clock): the real Daemon in-process, the official twilio
client against tests/fakes/twilio_fake.py, outside support hours (every critical pages).
- `site`: `--phones` sip_options checks (one per phone registration, interval 10 s, default
  retries 3) at site "storm" against a SipResponder subprocess, plus 1,000 healthy checks
  at another site; the responder is killed (SIGKILL) so every phone fails at once (ICMP port
  unreachable). Escalation: step 1 calls alice, step 2 (after 20 s) calls bob. Expected: 1
  incident, 1 ticket, 1 page per step, the incident and the first page within 5 s of the
  first hard decision.
- `sites`: `--sites` sites with one tcp check each (interval 5 s, retries 2), their listeners
  closed one by one over `--spread` seconds (the issue's "200 sites within 5 minutes",
  compressed); 100 on-call people (+1 555 01xx), sites i and i+100 share one, so a person's
  second site may be bundled into one page (rate_limits.bundle_window). Expected: one
  incident and ticket per site; decision → incident per site, decision → page for each
  person's first site.
CPU of the daemon's process (getrusage) from the kill until the window ends.
Traffic only to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_page import SID, TOKEN, Stamps, Victim, free_port  # noqa: E402


def cpu_s() -> float:
    """CPU seconds of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def head(tmp: Path) -> list[str]:
    """Config lines common to both parts."""
    return [
        "daemon:",
        f"  listen: 127.0.0.1:{free_port()}",
        "  public_url: https://noc.example.com",
        f"  state_path: {tmp}/nocd.db",
        "  log_level: warning",
        "  log_format: json",
        "  max_concurrency: 10000",
        "support_hours:",
        "  never: {timezone: UTC}",
    ]


def provider(people: list[str], policies: list[str], routes: list[str]) -> list[str]:
    """The paging section (Twilio against the fake)."""
    return [
        "paging:",
        "  provider:",
        "    type: twilio",
        "    account_sid: ${NOCD_BENCH_SID}",
        "    auth_token: ${NOCD_BENCH_TOKEN}",
        '    from_number: "+15550100"',
        "  people:",
        *people,
        "  escalation_policies:",
        *policies,
        "  routing:",
        "    default: {support_hours: never, escalation_policy: pol}",
        *(["    sites:", *routes] if routes else []),
    ]


class Run:
    """One daemon with the fake Twilio and hooks recording decision times."""

    def __init__(self, yaml: str) -> None:
        self.yaml = yaml
        self.decided: dict[str, float] = {}  # check → epoch seconds of its hard DOWN
        self.d: Any = None
        self.fake: Any = None

    async def __aenter__(self) -> Run:
        from nocd.configload import load_text
        from nocd.daemon import Daemon
        from nocd.sdnotify import Notifier
        from tests.fakes.twilio_fake import FakeTwilio

        os.environ["NOCD_BENCH_SID"], os.environ["NOCD_BENCH_TOKEN"] = SID, TOKEN
        self.fake = FakeTwilio(
            SID, TOKEN, public_url="https://noc.example.com", webhook_base="http://127.0.0.1:9"
        )
        await self.fake.__aenter__()
        self.fake.requests = Stamps()
        cfg = load_text(self.yaml, "storm.yaml")
        self.d = Daemon(cfg, notifier=Notifier(environ={}), twilio_base_url=self.fake.base_url)
        await self.d.start()
        orig = self.d.pipeline._log_transition

        def hook(c: Any, t: Any, verdict: Any) -> None:
            if t.kind.value == "down":
                self.decided.setdefault(c.name, time.time())
            orig(c, t, verdict)

        self.d.pipeline._log_transition = hook
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.d.stop()
        await self.fake.__aexit__()

    async def rows(self, sql: str) -> list[Any]:
        """Read from the daemon's store."""
        async with self.d.store.reader.execute(sql) as cur:
            return list(await cur.fetchall())

    def calls(self) -> list[tuple[float, str]]:
        """(epoch time, To) of every Calls create request at the fake."""
        out = []
        for rec, t in zip(self.fake.requests, self.fake.requests.times, strict=False):
            if rec.method == "POST" and rec.path.endswith("/Calls.json"):
                out.append((time.time() - (time.perf_counter() - t), str(rec.form.get("To"))))
        return out


async def one_site(phones: int, window: float) -> dict[str, Any]:
    """5,000 registrations of one site lost at once."""
    import bench_daemon_sip

    tmp = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    proc, port = bench_daemon_sip.start_responder(tmp)
    checks = [
        f"  - {{name: phone-{i}, type: sip_options, target: 'sip:127.0.0.1:{port}',"
        f" site: storm, interval: 10s, timeout: 2s}}"
        for i in range(phones)
    ]
    bg = Victim()
    await bg.start()  # the other site's checks stay healthy (tcp to a live listener)
    checks += [
        f"  - {{name: other-{i}, type: tcp, target: '127.0.0.1:{bg.port}', site: other,"
        f" interval: 30s, timeout: 2s}}"
        for i in range(1000)
    ]
    yaml = "\n".join(
        [
            *head(tmp),
            "sites:",
            "  storm: {name: Storm Street, timezone: UTC}",
            "  other: {name: Other, timezone: UTC}",
            *provider(
                [
                    '    alice: {name: Alice, phone: "+15550101"}',
                    '    bob: {name: Bob, phone: "+15550102"}',
                ],
                [
                    "    pol: {steps: [{people: [alice], channels: [voice], wait: 20s},"
                    " {people: [bob], channels: [voice], wait: 20s}]}"
                ],
                [],
            ),
            "checks:",
            *checks,
            "",
        ]
    )
    try:
        async with Run(yaml) as run:
            await asyncio.sleep(15)  # every phone probed at least once: all up
            c0 = cpu_s()
            killed = time.time()
            proc.kill()
            proc.wait(10)
            await asyncio.sleep(window)
            cpu = cpu_s() - c0
            incidents = await run.rows("SELECT site, opened_at FROM incidents")
            tickets = await run.rows("SELECT COUNT(*) FROM tickets")
            calls = run.calls()
            storm_decisions = sorted(v for k, v in run.decided.items() if k.startswith("phone-"))
            first = storm_decisions[0] if storm_decisions else float("nan")
            opened = [t for s, t in incidents if s == "storm"]
            return {
                "phones": phones,
                "down_decided": len(storm_decisions),
                "kill_to_first_decision_s": first - killed,
                "kill_to_last_decision_s": (storm_decisions[-1] - killed)
                if storm_decisions
                else None,
                "incidents": len(incidents),
                "tickets": tickets[0][0],
                "pages": len(calls),
                "page_to": [to for _, to in calls],
                "decision_to_incident_s": (min(opened) - first) if opened else None,
                "decision_to_first_page_s": (calls[0][0] - first) if calls else None,
                "cpu_s": cpu,
                "cpu_pct": 100 * cpu / window,
            }
    finally:
        bg.kill()
        shutil.rmtree(tmp, ignore_errors=True)


async def many_sites(n: int, spread: float, window: float) -> dict[str, Any]:
    """n sites failing one after another over `spread` seconds."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    victims = [Victim() for _ in range(n)]
    for v in victims:
        await v.start()
    people, routes, policies, checks, sites = [], [], [], [], []
    for i, v in enumerate(victims):
        key = f"s{i:03d}"
        sites.append(f"  {key}: {{name: Site {i}, timezone: UTC}}")
        if i < 100:  # fixture numbers are +1 555 01xx: sites i and i+100 share a person
            people.append(f'    p{i}: {{name: P {i}, phone: "+155501{i:02d}"}}')
            policies.append(f"    pol{i}: {{steps: [{{people: [p{i}], channels: [voice]}}]}}")
        routes.append(f"      {key}: {{support_hours: never, escalation_policy: pol{i % 100}}}")
        checks.append(
            f"  - {{name: {key}-pbx, type: tcp, target: '127.0.0.1:{v.port}', site: {key},"
            f" interval: 5s, timeout: 2s, retries: 2}}"
        )
    policies.append("    pol: {steps: [{people: [p0], channels: [voice]}]}")
    yaml = "\n".join(
        [*head(tmp), "sites:", *sites, *provider(people, policies, routes), "checks:", *checks, ""]
    )
    try:
        async with Run(yaml) as run:
            await asyncio.sleep(8)
            c0 = cpu_s()
            t0 = time.time()
            for v in victims:
                v.kill()
                await asyncio.sleep(spread / n)
            await asyncio.sleep(window)
            cpu = cpu_s() - c0
            wall = time.time() - t0
            incidents = {s: t for s, t in await run.rows("SELECT site, opened_at FROM incidents")}
            tickets = (await run.rows("SELECT COUNT(*) FROM tickets"))[0][0]
            calls = run.calls()
            first_call: dict[str, float] = {}
            for t, to in calls:  # a person's first page is for their first site (i < 100)
                first_call.setdefault(f"s{int(to[-2:]):03d}", t)
            to_inc, to_page = [], []
            for i in range(n):
                key = f"s{i:03d}"
                dec = run.decided.get(f"{key}-pbx")
                if dec is None:
                    continue
                if key in incidents:
                    to_inc.append(incidents[key] - dec)
                if key in first_call:
                    to_page.append(first_call[key] - dec)
            return {
                "sites": n,
                "decided": len(run.decided),
                "incidents": len(incidents),
                "tickets": tickets,
                "pages": len(calls),
                "decision_to_incident_p50_s": _q(to_inc, 0.5),
                "decision_to_incident_max_s": max(to_inc, default=float("nan")),
                "decision_to_page_p50_s": _q(to_page, 0.5),
                "decision_to_page_p99_s": _q(to_page, 0.99),
                "decision_to_page_max_s": max(to_page, default=float("nan")),
                "cpu_s": cpu,
                "cpu_pct": 100 * cpu / wall,
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _q(v: list[float], q: float) -> float:
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))]


def main() -> None:
    """Parse arguments, run the selected parts `--repeats` times, print the results."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--phones", type=int, default=5000)
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--spread", type=float, default=50.0)
    ap.add_argument("--window", type=float, default=45.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--parts", default="site,sites")
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    for part in args.parts.split(","):
        results = []
        for _ in range(args.repeats):
            if part == "site":
                r = asyncio.run(one_site(args.phones, args.window))
            else:
                r = asyncio.run(many_sites(args.sites, args.spread, args.window))
            results.append(r)
            print(
                part,
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()},
                flush=True,
            )
        if len(results) > 1:
            for k in results[0]:
                vals = [r[k] for r in results if isinstance(r[k], int | float)]
                if vals:
                    print(
                        f"  {part} {k}: median {statistics.median(vals):.3f}"
                        f" range {min(vals):.3f}–{max(vals):.3f}"
                    )


if __name__ == "__main__":
    main()
