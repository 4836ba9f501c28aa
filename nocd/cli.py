"""The `nocd` command line: run the daemon, validate config, probe once, talk to a daemon."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checks.base import CheckConfig
from checks.registry import check_types
from checks.registry import get as get_check_type
from nocd import cli_ops, cli_page
from nocd.configload import ConfigError, load_file
from nocd.model import ExitCode, Observation, Severity, Verdict

DEFAULT_CONFIG = "/etc/nocd/nocd.yaml"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="nocd", description="NOC monitoring and paging daemon")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (YAML)")

    chk = sub.add_parser("check-config", help="validate a config file and exit")
    chk.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (YAML)")

    pr = sub.add_parser(
        "probe",
        help="run one check once and print the result",
        description=(
            "Examples: nocd probe http https://example.com | nocd probe sip:pbx.example.com | "
            "nocd probe tcp pbx.example.com:5061 | nocd probe -c FILE CHECKNAME --debug"
        ),
    )
    pr.add_argument("-c", "--config", help="take the check from this config file")
    pr.add_argument("what", help="a check type (http, tcp, …), a sip:/sips: URI, or a check name")
    pr.add_argument("target", nargs="?", help="the target when `what` is a check type")
    pr.add_argument("--timeout", default="5s", help="probe timeout (default 5s)")
    pr.add_argument("--debug", action="store_true", help="print the transaction transcript")
    pr.add_argument("--json", action="store_true", help="print JSON")

    cli_page.register(sub)
    cli_ops.register(sub)  # status, incidents, ack, resolve, note, silence, oncall, rfo
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nocd` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(Path(args.config))
    if args.command == "check-config":
        return _check_config(Path(args.config))
    if args.command == "probe":
        return asyncio.run(_probe(args))
    if args.command == "test-page":
        return cli_page.run(args)
    if getattr(args, "ops", None) is not None:
        return cli_ops.run(args)
    return int(ExitCode.USAGE)


def _check_config(path: Path) -> int:
    try:
        cfg = load_file(path)
    except ConfigError as exc:
        print(f"{path}: invalid ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return int(ExitCode.FAILED)
    print(f"{path}: OK ({len(cfg.checks)} checks, {len(cfg.sites)} sites)")
    return int(ExitCode.OK)


def _run(path: Path) -> int:
    from nocd import logs
    from nocd.daemon import Daemon

    try:
        cfg = load_file(path)
    except ConfigError as exc:
        print(f"nocd: refusing to start, {path} is invalid:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return int(ExitCode.FAILED)
    logs.configure(cfg.daemon.log_level, cfg.daemon.log_format)
    # A watchdog kill (SIGABRT) then leaves a Python traceback in the journal.
    faulthandler.enable()
    daemon = Daemon(cfg, config_path=path)
    try:
        asyncio.run(daemon.serve())
    except OSError as exc:
        print(f"nocd: cannot start: {exc}", file=sys.stderr)
        return int(ExitCode.UNAVAILABLE)
    except Exception as exc:
        from nocd.store import StoreError

        if isinstance(exc, StoreError):
            print(f"nocd: cannot start: {exc}", file=sys.stderr)
            return int(ExitCode.UNAVAILABLE)
        raise
    return int(ExitCode.OK)


def _adhoc_check(what: str, target: str | None, timeout: str) -> CheckConfig:
    """Build a one-off check from the command line (`http URL`, `sip:URI`, …)."""
    if what.startswith(("sip:", "sips:")) and target is None:
        what, target = "sip_options", what
    types = check_types()
    if what not in types:
        raise SystemExit(
            f"nocd probe: unknown check type {what!r}; known: {', '.join(sorted(types))}"
        )
    if target is None:
        raise SystemExit(f"nocd probe: {what} needs a target")
    model = types[what].config
    try:
        return model.model_validate(
            {
                "name": "cli",
                "type": what,
                "target": target,
                "timeout": timeout,
                "interval": max(30, _seconds(timeout)),
            }
        )
    except Exception as exc:  # noqa: BLE001 - report start-up failures in one clear line
        raise SystemExit(f"nocd probe: invalid {what} check: {exc}") from None


def _seconds(text: str) -> float:
    from nocd.duration import parse_duration

    return parse_duration(text)


async def _probe(args: argparse.Namespace) -> int:
    from checks.resources import close_all
    from nocd.scheduler import run_probe

    if args.config:
        try:
            cfg_all = load_file(args.config)
            cfg = cfg_all.check(args.what)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return int(ExitCode.FAILED)
        except KeyError:
            print(f"nocd probe: no check named {args.what!r} in {args.config}", file=sys.stderr)
            return int(ExitCode.USAGE)
    else:
        cfg = _adhoc_check(args.what, args.target, args.timeout)
    ctype = get_check_type(cfg.type)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.timeout
    transcript: list[str] = []
    try:
        if args.debug:
            verbose = getattr(sys.modules[ctype.probe.__module__], "probe_verbose", None)
            if verbose is not None:
                obs, transcript = await verbose(cfg, deadline)
            else:
                obs = await run_probe(cfg, deadline)
        else:
            obs = await run_probe(cfg, deadline)
        verdict = ctype.evaluate(obs, cfg)
    finally:
        await close_all()
    _print_result(cfg, obs, verdict, transcript, args.json)
    return int(ExitCode.OK if verdict.severity is Severity.OK else ExitCode.FAILED)


def _print_result(
    cfg: CheckConfig, obs: Observation, verdict: Verdict, transcript: list[str], as_json: bool
) -> None:
    if as_json:
        out: dict[str, Any] = {
            "check": cfg.name,
            "type": cfg.type,
            "target": cfg.target,
            "observation": {
                "ok": obs.ok,
                "failure": obs.failure.value,
                "detail": obs.detail,
                "duration_s": round(obs.duration_s, 6),
                "values": dict(obs.values),
            },
            "verdict": {
                "severity": verdict.severity.value,
                "failure": verdict.failure.value,
                "reason": verdict.reason,
            },
        }
        if transcript:
            out["transcript"] = transcript
        print(json.dumps(out, indent=2, default=str))
        return
    for line in transcript:
        print(line)
    if transcript:
        print()
    print(f"check     {cfg.name} ({cfg.type}) {cfg.target or ''}".rstrip())
    print(f"result    {'ok' if obs.ok else 'FAILED'}: {obs.detail}")
    if not obs.ok:
        print(f"failure   {obs.failure.value}")
    print(f"duration  {obs.duration_s * 1000:.1f} ms")
    for key, val in obs.values.items():
        print(f"{key:<9} {val}")
    print(
        f"verdict   {verdict.severity.value.upper()}"
        + (f" — {verdict.reason}" if verdict.reason else "")
    )
