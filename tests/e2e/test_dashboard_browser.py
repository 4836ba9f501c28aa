"""The dashboard and status page in headless Chromium (Debian's), driven by Playwright.

A running daemon in-process; the browser logs in with an API token, watches a site turn
red without reloading when its check starts failing, acknowledges an incident with the
button and sees it on the timeline; the public status page shows the outage and nothing
internal. Screenshots go to artifacts/screenshots/ (README's are copied from there).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api_world import (
    ARI_PASSWORD,
    READ_TOKEN,
    WRITE_TOKEN,
    World,
    start_world,
    stop_world,
)
from tests.peers import require_binary

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Nothing of this may appear on the public page: IPs, serials, sites, customers, people, checks.
INTERNAL = [
    "127.0.0.1",
    "EX-PBX-0001",
    "Example PBX",
    "main-street",
    "Main Street",
    "elm-street",
    "Elm Street",
    "Acme",
    "Example Partner",
    "Alice",
    "Bob",
    "alice-ops",
    "pbx1",
    ARI_PASSWORD,
]


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    w = await start_world(tmp_path, monkeypatch)
    try:
        yield w
    finally:
        await stop_world(w)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = require_binary("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def login(browser: Any, url: str, token: str, **context: Any) -> Any:
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    await page.goto(url + "/")
    assert page.url.endswith("/login")  # no session: sent to the login form
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#panel-sites")
    return page


async def test_site_turns_red_live_ack_button_and_public_status(world: World, browser: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    inc = await world.wait_for_incident()  # main-street's dead port: red from the start
    page = await login(browser, world.url, WRITE_TOKEN, viewport={"width": 1280, "height": 900})
    await page.wait_for_selector("#live[data-state=live]", timeout=5000)
    await page.wait_for_selector("#site-elm-street[data-colour=green]", timeout=5000)
    assert await page.get_attribute("#site-main-street", "data-colour") == "red"
    assert "phones 3/3 registered" in await page.inner_text("#site-elm-street")

    # Elm Street's PBX stops answering: its tile turns red with no reload.
    await page.evaluate("window.__sameDocument = true")
    world.listener.close()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await page.wait_for_selector("#site-elm-street[data-colour=red]", timeout=8000)
    assert loop.time() - started < 8
    assert await page.evaluate("window.__sameDocument") is True

    # Acknowledge main-street's incident with the button; the timeline shows it.
    card = f"#incident-{inc['code']}"
    await page.wait_for_selector(card)
    await page.click(f"{card} button.ack")
    await page.wait_for_selector(f"{card}[data-state=acknowledged]", timeout=5000)
    timeline = await page.inner_text(f"{card} .timeline")
    assert "acknowledged by alice-ops via dashboard" in timeline
    assert await page.query_selector(f"{card} button.ack") is None
    _, api_view = await world.call("GET", f"/api/v1/incidents/{inc['code']}")
    assert api_view["state"] == "acknowledged" and api_view["acked_by"] == "alice-ops"
    await page.wait_for_selector("#site-elm-street .inc", timeout=5000)  # its incident too
    await page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    phone = await login(browser, world.url, READ_TOKEN, viewport={"width": 390, "height": 844})
    assert await phone.query_selector("button.ack") is None  # read scope: no action buttons
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # readable on a phone: nothing wider than the screen
    await phone.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=True)

    # The public status page: no login, the outage, and nothing internal.
    public = await (await browser.new_context()).new_page()
    await public.goto(world.url + "/status")
    assert await public.inner_text("#overall") == "Major outage"
    rows = await public.eval_on_selector_all(
        "li.service", "els => els.map(e => [e.querySelector('.name').textContent, e.dataset.state])"
    )
    services = dict(rows)
    assert services == {"Hosted voice": "outage", "SIP trunks": "outage"}
    text = await public.inner_text("body")
    assert "Outage: Hosted voice" in text
    html = await public.content()
    for word in INTERNAL:
        assert word not in html, word
    assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", text)
    await public.screenshot(path=str(SHOTS / "status.png"), full_page=True)
