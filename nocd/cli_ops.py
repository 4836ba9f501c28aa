"""Operator commands against a running daemon: status, incidents, ack, resolve, note, silence,
oncall, rfo. Human tables by default, `--json` for scripts.

Exit codes: 0 ok; 1 the answer is "not ok" (`status`: not ready or a critical incident is
open; `ack`/`resolve`/`note`/`rfo`/`silence expire`: no such incident or silence;
`oncall`: no on-call lookup available); 2 usage or a request the daemon refused as
invalid; 3 the daemon is unreachable; 4 authentication refused (no/bad token, or the
token lacks the `write` scope).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nocd.client import ApiError, Client, Unreachable, find_token, find_url
from nocd.secrets import SecretError

EXIT_OK, EXIT_NOT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4
DEFAULT_CONFIG = "/etc/nocd/nocd.yaml"

Command = Callable[[Client, argparse.Namespace], tuple[Any, str, int]]
"""A command returns (JSON answer, human text, exit code)."""


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument("--url", help="daemon URL (default: $NOCD_URL, the config's daemon.listen)")
    g.add_argument(
        "--token", help="API token (prefer $NOCD_TOKEN or $NOCD_TOKEN_FILE: argv is visible)"
    )
    g.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help="config file to read daemon.listen from"
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    return p


def register(sub: Any) -> None:
    """Add the operator subcommands to the `nocd` parser's subparsers."""
    common = [_common()]

    def add(name: str, fn: Command, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=common, help=help_)
        p.set_defaults(ops=fn)
        return p

    add("status", cmd_status, "daemon health and open incidents (exit 1 if critical)")
    inc = add("incidents", cmd_incidents, "list incidents")
    inc.add_argument("--state", default="open", help="open (default), all, triggered, …")
    inc.add_argument("--severity", help="critical, degraded, low")
    inc.add_argument("--site")
    inc.add_argument("--limit", type=int, default=50)
    add("ack", cmd_ack, "acknowledge an incident (stops escalation)").add_argument("id")
    add("resolve", cmd_resolve, "resolve an incident by hand").add_argument("id")
    note = add("note", cmd_note, "add a note ('root cause: …', 'remedy: …' feed the RFO)")
    note.add_argument("id")
    note.add_argument("text", nargs="+")
    sil = sub.add_parser("silence", help="silences: planned work without pages or tickets")
    silsub = sil.add_subparsers(dest="silence_command", required=True)
    sa: argparse.ArgumentParser = silsub.add_parser("add", parents=common, help="add a silence")
    sa.set_defaults(ops=cmd_silence_add)
    sa.add_argument("name")
    sa.add_argument("--check", action="append", default=[], help="check name (repeatable)")
    sa.add_argument("--site", action="append", default=[], help="site key (repeatable)")
    sa.add_argument("--customer", action="append", default=[], help="customer key (repeatable)")
    sa.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable)")
    when = sa.add_mutually_exclusive_group(required=True)
    when.add_argument("--duration", help="e.g. 2h, 30m")
    when.add_argument("--until", help="end time, ISO-8601 with zone")
    sa.add_argument("--start", help="start time, ISO-8601 with zone (default now)")
    sa.add_argument("--comment", default="")
    sa.add_argument("--public", action="store_true", help="show on the public status page")
    sl: argparse.ArgumentParser = silsub.add_parser("list", parents=common, help="list silences")
    sl.set_defaults(ops=cmd_silence_list)
    sl.add_argument("--all", action="store_true", help="include expired silences")
    se: argparse.ArgumentParser = silsub.add_parser("expire", parents=common, help="end now")
    se.set_defaults(ops=cmd_silence_expire)
    se.add_argument("id")
    add("oncall", cmd_oncall, "who is on call now (or --at TIME) and until when").add_argument(
        "--at", help="ISO-8601 time (default now)"
    )
    rfo = add("rfo", cmd_rfo, "print the Reason For Outage report of an incident")
    rfo.add_argument("id")
    rfo.add_argument("--html", action="store_true", help="HTML instead of Markdown")


def run(args: argparse.Namespace) -> int:
    """Run the chosen operator command; returns the exit code."""
    try:
        token = find_token(args.token)
    except SecretError as exc:
        print(f"nocd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = Client(find_url(args.url, Path(args.config) if args.config else None), token)
    command: Command = args.ops
    try:
        answer, text, code = command(client, args)
    except Unreachable as exc:
        print(f"nocd: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as exc:
        return _api_error(exc, args, token)
    if args.json:
        print(answer if isinstance(answer, str) else json.dumps(answer, indent=2))
    else:
        print(text)
    return code


def _api_error(exc: ApiError, args: argparse.Namespace, token: str | None) -> int:
    if args.json and exc.body is not None:
        print(json.dumps(exc.body, indent=2))
    print(f"nocd: {exc.message} (HTTP {exc.status})", file=sys.stderr)
    if exc.status == 401:
        if not token:
            print("nocd: set NOCD_TOKEN or NOCD_TOKEN_FILE to an API token", file=sys.stderr)
        return EXIT_AUTH
    if exc.status == 403:
        return EXIT_AUTH
    if exc.status in (404, 501):
        return EXIT_NOT_OK
    if exc.status >= 500:
        return EXIT_UNREACHABLE
    return EXIT_USAGE


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _when(iso: str | None) -> str:
    """2026-11-22T05:16:54Z → 2026-11-22 05:16Z (UTC)."""
    return f"{iso[:10]} {iso[11:16]}Z" if iso else "—"


def cmd_status(c: Client, _a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd status`."""
    s = c.get("/status")
    sev = s["incidents"]["by_severity"]
    lines = [
        f"nocd {s['version']}: {'OK' if s['ok'] else 'NOT OK'}",
        "ready: "
        + (
            "yes"
            if s["ready"]
            else "NO (" + ", ".join(k for k, v in s["conditions"].items() if not v) + ")"
        ),
        f"checks: {s['checks']['total']} total, {s['checks']['failing']} failing"
        + (f" ({', '.join(s['checks']['failing_names'][:10])})" if s["checks"]["failing"] else ""),
        f"incidents: {s['incidents']['open']} open ({s['incidents']['unacknowledged']} unacknowledged)"
        + f" — critical {sev.get('critical', 0)}, degraded {sev.get('degraded', 0)}, low {sev.get('low', 0)}",
    ]
    if s["incidents"]["open"]:
        found = c.get("/incidents", state="open", limit=20)["incidents"]
        lines += ["", _incident_table(found)]
    return s, "\n".join(lines), EXIT_OK if s["ok"] else EXIT_NOT_OK


def _incident_table(incidents: list[dict[str, Any]]) -> str:
    if not incidents:
        return "no incidents"
    return table(
        ["code", "severity", "state", "site", "opened", "title"],
        [
            (i["code"], i["severity"], i["state"], i.get("site"), _when(i["opened_at"]), i["title"])
            for i in incidents
        ],
    )


def cmd_incidents(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd incidents`."""
    found = c.get("/incidents", state=a.state, severity=a.severity, site=a.site, limit=a.limit)
    return found, _incident_table(found["incidents"]), EXIT_OK


def _action(c: Client, ref: str, verb: str) -> tuple[Any, str, int]:
    res = c.post(f"/incidents/{_ref(ref)}/{verb}", {"via": "cli"})
    return res, res["message"], EXIT_OK


def _ref(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def cmd_ack(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd ack ID`."""
    return _action(c, a.id, "ack")


def cmd_resolve(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd resolve ID`."""
    return _action(c, a.id, "resolve")


def cmd_note(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd note ID TEXT…`."""
    res = c.post(f"/incidents/{_ref(a.id)}/notes", {"text": " ".join(a.text)})
    return res, f"{res['message']} to incident {res['incident']}", EXIT_OK


def _silence_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no silences"

    def what(m: dict[str, Any]) -> str:
        parts = [f"{k}={','.join(v)}" for k, v in m.items() if v and k != "labels"]
        parts += [f"label {k}={v}" for k, v in (m.get("labels") or {}).items()]
        return " ".join(parts)

    return table(
        ["id", "name", "state", "starts", "ends", "by", "matches"],
        [
            (
                s["id"],
                s["name"],
                s["state"],
                _when(s["starts_at"]),
                _when(s["ends_at"]),
                s["created_by"],
                what(s["match"]),
            )
            for s in rows
        ],
    )


def cmd_silence_add(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd silence add NAME --site … --duration 2h`."""
    labels = {}
    for item in a.label:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ApiError(400, f"--label wants KEY=VALUE, got {item!r}")
        labels[key] = value
    body: dict[str, Any] = {
        "name": a.name,
        "match": {"checks": a.check, "sites": a.site, "customers": a.customer, "labels": labels},
        "comment": a.comment,
        "public": a.public,
    }
    for key, value in (("duration", a.duration), ("ends_at", a.until), ("starts_at", a.start)):
        if value:
            body[key] = value
    made = c.post("/silences", body)
    return made, f"silence {made['id']} added\n\n" + _silence_table([made]), EXIT_OK


def cmd_silence_list(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd silence list [--all]`."""
    found = c.get("/silences", all="true" if a.all else None)
    return found, _silence_table(found["silences"]), EXIT_OK


def cmd_silence_expire(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd silence expire ID`."""
    res = c.post(f"/silences/{_ref(a.id)}/expire")
    sid = res["silence"]["id"]
    text = f"silence {sid} expired" if res["changed"] else f"silence {sid} was already over"
    return res, text, EXIT_OK


def cmd_oncall(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd oncall [--at TIME]`."""
    res = c.get("/oncall", at=a.at)
    if not res["schedules"]:
        return res, "no on-call schedules configured", EXIT_OK
    rows = [
        (s["schedule"], s["name"] or s["person"] or "nobody", s["person"], _when(s["until"]))
        for s in res["schedules"]
    ]
    text = f"on call at {_when(res['at'])}\n\n" + table(
        ["schedule", "on call", "person", "until"], rows
    )
    return res, text, EXIT_OK


def cmd_rfo(c: Client, a: argparse.Namespace) -> tuple[Any, str, int]:
    """`nocd rfo ID [--html]`."""
    text = c.get(f"/incidents/{_ref(a.id)}/rfo", format="html" if a.html else "markdown")
    return str(text), str(text), EXIT_OK
