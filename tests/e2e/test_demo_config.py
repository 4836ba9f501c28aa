"""The README demo works: config/demo.yaml runs, its SIP checks reach the built-in responder,
the dead port opens an incident and the page is DRY-RUN (nothing is sent anywhere)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nocd.configload import load_text
from nocd.daemon import Daemon
from nocd.sdnotify import Notifier
from tests.peers import free_port

DEMO = Path(__file__).parents[2] / "config" / "demo.yaml"


async def test_demo_config_runs_with_sip_responder_and_dry_run_paging(tmp_path: Path) -> None:
    http, sip = free_port(), free_port()
    text = (
        DEMO.read_text()
        .replace("9469", str(http))
        .replace("5062", str(sip))
        .replace(".nocd-demo/nocd.db", str(tmp_path / "nocd.db"))
        .replace("interval: 15s", "interval: 1s")
        .replace("interval: 20s", "interval: 1s")
        .replace("timeout: 3s", "timeout: 1s")
        .replace("timeout: 2s", "timeout: 1s")
        .replace("retries: 3", "retries: 1")
    )
    cfg = load_text(text, "demo.yaml")
    daemon = Daemon(cfg, notifier=Notifier(environ={}))
    await daemon.start()
    try:
        assert daemon.pager is not None and daemon.pager.notifier.dry_run
        assert daemon.pipeline is not None
        states = daemon.pipeline.results
        for _ in range(100):
            await asyncio.sleep(0.1)
            if {
                "main-street-pbx-sip",
                "main-street-pbx-sip-tcp",
                "main-street-voicemail-portal",
            } <= set(states):
                break
        assert states["main-street-pbx-sip"].verdict.ok
        assert states["main-street-pbx-sip-tcp"].verdict.ok
        assert not states["main-street-voicemail-portal"].verdict.ok
        assert daemon.store is not None
        for _ in range(50):
            await asyncio.sleep(0.1)
            async with daemon.store.reader.execute("SELECT COUNT(*) FROM incidents") as cur:
                row = await cur.fetchone()
            if row and row[0]:
                break
        assert row is not None and row[0] == 1
    finally:
        await daemon.stop()
