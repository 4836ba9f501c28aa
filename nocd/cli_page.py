"""`nocd test-page`: send one real test page with the configured provider and wait for it."""

from __future__ import annotations

import argparse
import asyncio
import sys

from nocd.clock import SystemClock
from nocd.configload import ConfigError, load_file
from nocd.model import ExitCode
from paging.notifiers import build_notifier
from paging.oncall import test_page


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `test-page` subcommand."""
    p = sub.add_parser(
        "test-page",
        help="send a real test page (voice or SMS) and wait for its outcome",
        description="Example: nocd test-page -c /etc/nocd/nocd.yaml --to +15550101 --sms",
    )
    p.add_argument("-c", "--config", default="/etc/nocd/nocd.yaml", help="config file (YAML)")
    p.add_argument("--to", required=True, help="E.164 number, e.g. +15550101")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--voice", dest="channel", action="store_const", const="voice")
    kind.add_argument("--sms", dest="channel", action="store_const", const="sms")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a final status")
    p.set_defaults(channel="voice")


def run(args: argparse.Namespace) -> int:
    """Run `nocd test-page`; exit 0 when the provider confirms delivery."""
    try:
        cfg = load_file(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return int(ExitCode.FAILED)
    return asyncio.run(_send(cfg.paging, args))


async def _send(paging: object, args: argparse.Namespace) -> int:
    from paging.config import PagingConfig

    assert isinstance(paging, PagingConfig)
    notifier = build_notifier(paging.provider)
    try:
        if notifier.dry_run:
            print("DRY-RUN: no paging provider credentials are configured; nothing is sent")
        try:
            result = await test_page(
                paging, args.to, args.channel, notifier, SystemClock(), wait_for=args.wait
            )
        except ValueError as exc:
            print(f"nocd test-page: {exc}", file=sys.stderr)
            return int(ExitCode.USAGE)
    finally:
        await notifier.close()
    line = f"{args.channel} to {args.to}: {result.status}"
    if result.provider_id:
        line += f" (id {result.provider_id})"
    if result.detail:
        line += f" — {result.detail}"
    print(line)
    return int(ExitCode.OK if result.ok else ExitCode.FAILED)
