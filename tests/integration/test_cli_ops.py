"""The operator CLI against a running daemon: tables, --json, exit codes, env and token file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from nocd import cli
from tests.integration.api_world import READ_TOKEN, WRITE_TOKEN, World, running_world

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(tmp_path_factory, "cli", quiet=True) as w:
        yield w


async def nocd(
    world: World, capsys: pytest.CaptureFixture[str], *argv: str, token: str | None = WRITE_TOKEN
) -> tuple[int, str, str]:
    """Run `nocd ARGV` in a thread (the daemon keeps serving on this loop)."""
    args = [*argv, "--url", world.url]
    if token is not None:
        args += ["--token", token]
    code = await asyncio.to_thread(cli.main, args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_exits_1_while_a_critical_incident_is_open(world: World, capsys) -> None:
    code, out, _ = await nocd(world, capsys, "status")
    assert code == 1
    assert "NOT OK" in out and "main-street-pbx" in out and "critical 1" in out
    code, out, _ = await nocd(world, capsys, "status", "--json")
    assert code == 1 and json.loads(out)["ok"] is False


async def test_incidents_table_and_json(world: World, capsys) -> None:
    code, out, _ = await nocd(world, capsys, "incidents", "--site", "main-street")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["CODE", "SEVERITY", "STATE"]
    assert "critical" in lines[1] and "main-street" in lines[1]
    code, out, _ = await nocd(world, capsys, "incidents", "--json", token=READ_TOKEN)
    assert code == 0 and json.loads(out)["incidents"][0]["site"] == "main-street"
    code, out, err = await nocd(world, capsys, "incidents", "--state", "bogus")
    assert code == 2 and "state must be one of" in err


async def test_ack_note_resolve_rfo_with_exit_codes(world: World, capsys) -> None:
    inc = await world.wait_for_incident()
    code, out, _ = await nocd(world, capsys, "ack", inc["code"], token=READ_TOKEN)
    assert code == 4  # the read token lacks the write scope
    code, out, _ = await nocd(world, capsys, "ack", inc["code"])
    assert (code, out.strip()) == (0, f"incident {inc['code']} acknowledged")
    code, out, _ = await nocd(world, capsys, "ack", inc["code"], "--json")
    assert code == 0 and json.loads(out)["changed"] is False
    code, out, _ = await nocd(world, capsys, "note", inc["code"], "root", "cause:", "fibre", "cut")
    assert code == 0 and "note added" in out
    code, out, _ = await nocd(world, capsys, "rfo", inc["code"])
    assert code == 0 and out.startswith("# Reason For Outage") and "fibre cut" in out
    code, out, _ = await nocd(world, capsys, "rfo", inc["code"], "--html")
    assert code == 0 and "<h1" in out
    _, detail = await world.call("GET", f"/api/v1/incidents/{inc['code']}")
    assert any(e["text"] == "acknowledged by alice-ops via cli" for e in detail["timeline"])
    code, out, _ = await nocd(world, capsys, "resolve", inc["code"])
    assert code == 0 and "resolved" in out
    code, _, err = await nocd(world, capsys, "ack", "NOSUCH")
    assert code == 1 and "no incident" in err
    code, _, err = await nocd(world, capsys, "rfo", "NOSUCH")
    assert code == 1


async def test_silence_add_list_expire(world: World, capsys) -> None:
    code, out, _ = await nocd(
        world, capsys, "silence", "add", "cabling", "--site", "elm-street", "--duration", "2h",
        "--label", "service=SIP trunks", "--comment", "planned", "--json",
    )  # fmt: skip
    assert code == 0
    made = json.loads(out)
    assert made["match"]["labels"] == {"service": "SIP trunks"} and made["state"] == "active"
    code, out, _ = await nocd(world, capsys, "silence", "list")
    assert code == 0 and "cabling" in out and "sites=elm-street" in out
    code, out, _ = await nocd(world, capsys, "silence", "expire", str(made["id"]))
    assert (code, out.strip()) == (0, f"silence {made['id']} expired")
    code, out, _ = await nocd(world, capsys, "silence", "expire", str(made["id"]))
    assert code == 0 and "already over" in out
    code, out, _ = await nocd(world, capsys, "silence", "list")
    assert "cabling" not in out
    code, out, _ = await nocd(world, capsys, "silence", "list", "--all")
    assert "cabling" in out and "expired" in out
    code, _, err = await nocd(
        world, capsys, "silence", "add", "x", "--site", "nowhere", "--duration", "1h"
    )
    assert code == 2 and "nowhere" in err
    code, _, _ = await nocd(world, capsys, "silence", "expire", "999999")
    assert code == 1


async def test_oncall_now_and_at(world: World, capsys) -> None:
    code, out, _ = await nocd(world, capsys, "oncall", "--at", "2026-01-06T12:00:00-05:00")
    assert code == 0
    row = out.splitlines()[-1].split()
    assert row[0] == "noc-primary" and "Alice" in row and "2026-01-12" in row
    code, out, _ = await nocd(world, capsys, "oncall", "--json")
    assert code == 0 and json.loads(out)["schedules"][0]["person"] in ("alice", "bob")


async def test_auth_and_reachability_exit_codes(world: World, capsys, tmp_path: Path) -> None:
    code, _, err = await nocd(world, capsys, "status", token=None)
    assert code == 4 and "NOCD_TOKEN" in err
    code, _, _ = await nocd(world, capsys, "status", token="wrong-token")
    assert code == 4
    code = await asyncio.to_thread(cli.main, ["status", "--url", "http://127.0.0.1:1"])
    assert code == 3
    assert "cannot reach nocd" in capsys.readouterr().err


async def test_the_installed_command_reads_url_from_config_and_token_file(
    world: World, tmp_path: Path
) -> None:
    # A real process, as an operator runs it: address from the config, token from a file.
    port = world.url.rsplit(":", 1)[1]
    conf = tmp_path / "nocd.yaml"
    conf.write_text(f"daemon:\n  listen: 0.0.0.0:{port}\napi:\n  tokens: []\n")
    token_file = tmp_path / "token"
    token_file.write_text(READ_TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOCD_")}
    env["NOCD_TOKEN_FILE"] = str(token_file)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nocd", "incidents", "--state", "all", "-c", str(conf), "--json",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["incidents"]
    env["NOCD_URL"] = "http://127.0.0.1:1"  # the environment wins over the config
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nocd", "status", "-c", str(conf),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3
