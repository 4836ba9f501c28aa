"""Hostile config files get a clear ConfigError, fast and in bounded memory (issue #10).

Each case would, before the guards in nocd/configload.py, have exhausted memory (alias bomb),
crashed the interpreter (deep flow nesting: a segfault in libyaml's C composer), raised a bare
RecursionError (deep block nesting) or read an unbounded file whole. Timings asserted here
are hang guards with a wide margin, not benchmarks.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from nocd.configload import MAX_CONFIG_CHARS, ConfigError, load_file, load_text

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 10.0


def alias_bomb(levels: int = 9) -> str:
    """The YAML "billion laughs": 9 levels of 9 aliases each expand to 9**9 strings."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"checks: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def measured(fn: Callable[[], object]) -> tuple[ConfigError, float, int]:
    """Run fn expecting ConfigError; return it, the seconds taken and the peak traced bytes."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            fn()
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return info.value, elapsed, peak


HOSTILE_TEXTS = {
    "alias_bomb": (alias_bomb(), "alias bomb"),
    "alias_to_itself": ("checks: &loop [*loop]\n", "refers to itself"),
    "deep_flow_list": ("checks: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 64"),
    "deep_flow_map": ("daemon: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", "nested more"),
    "deep_block_map": ("".join("  " * i + f"k{i}:\n" for i in range(3_000)), "nested more"),
    "deep_compact_seq": ("checks:\n" + "- " * 5_000 + "x\n", "nested more than 64"),
    # Closing brackets hidden in quoted strings must not mask the real nesting.
    "deep_with_quoted_closers": ("checks: " + '[ "]" ' * 20_000 + "]" * 20_000 + "\n", "nested"),
    "duplicate_key": (
        "daemon:\n  listen: 127.0.0.1:9101\n  listen: 127.0.0.1:9102\n",
        'duplicate key "listen"',
    ),
    "control_chars": ("daemon:\n  listen: \x00\x01\x02\n", "YAML"),
    "too_large": ("# " + "x" * MAX_CONFIG_CHARS + "\n", "file too large"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_text_is_a_config_error_fast_and_small(name: str) -> None:
    text, expected = HOSTILE_TEXTS[name]
    err, elapsed, peak = measured(lambda: load_text(text, f"{name}.yaml"))
    assert expected in str(err), str(err)
    assert str(err).startswith(f"{name}.yaml"), "the error names the file"
    assert elapsed < HANG_GUARD_S, f"{name}: {elapsed:.1f}s"
    # Beyond the text itself (up to 16 MiB for too_large), a few MB of parse state at most.
    assert peak < len(text) * 3 + (64 << 20), f"{name}: peak {peak >> 20} MiB"


def test_the_guards_let_real_configs_with_anchors_through() -> None:
    """Anchors for shared settings and a few dozen flow collections are normal YAML."""
    sites = "\n".join(f"  s{i}: {{name: Site {i}, timezone: UTC}}" for i in range(100))
    text = f"""
sites:
{sites}
checks:
  - &web
    name: web-a
    type: http
    target: "http://127.0.0.1:9/health?q=[a]"  # brackets in quotes and comments: [[[[
    site: s1
    interval: 30s
    expect_status: [200, 204]
  - <<: *web
    name: web-b
"""
    cfg = load_text(text)
    assert [c.name for c in cfg.checks] == ["web-a", "web-b"]
    assert cfg.checks[1].interval == 30.0
    assert cfg.checks[1].site == "s1"


def test_a_50_mb_file_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        chunk = "# padding " + "x" * 1013 + "\n"
        for _ in range(50 * 1024):
            f.write(chunk)
    assert path.stat().st_size >= 50 << 20
    err, elapsed, peak = measured(lambda: load_file(path))
    assert "file too large: over 16 MiB" in str(err)
    assert elapsed < HANG_GUARD_S
    assert peak < (MAX_CONFIG_CHARS + (8 << 20)), f"read {peak >> 20} MiB of a 50 MiB file"


def test_an_endless_file_is_refused(tmp_path: Path) -> None:
    err, elapsed, _ = measured(lambda: load_file("/dev/zero"))
    assert "file too large" in str(err)
    assert elapsed < HANG_GUARD_S


def test_binary_garbage_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(bytes(range(256)) * 64)
    err, _, _ = measured(lambda: load_file(path))
    assert "not UTF-8 text" in str(err)


def test_nul_bytes_in_utf8_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"daemon:\n  listen: 127.0.0.1:9\x00\x00\n")
    err, _, _ = measured(lambda: load_file(path))
    assert "binary data" in str(err)


def test_check_config_reports_an_alias_bomb_and_fails(tmp_path: Path) -> None:
    """`nocd check-config` (what an operator runs before a reload) says what is wrong."""
    name = "alias_bomb"
    path = tmp_path / f"{name}.yaml"
    path.write_text(HOSTILE_TEXTS[name][0])
    proc = subprocess.run(
        [sys.executable, "-m", "nocd", "check-config", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "invalid (1 problem(s))" in proc.stderr, proc.stderr
    assert HOSTILE_TEXTS[name][1] in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_a_running_daemon_refuses_a_hostile_reload_and_keeps_serving(
    tmp_path: Path,
) -> None:
    """SIGHUP after someone saved a bomb: the old config stays, the daemon keeps answering."""
    import aiohttp

    from nocd.daemon import Daemon
    from nocd.sdnotify import Notifier
    from tests.peers import free_port

    port = free_port()
    path = tmp_path / "nocd.yaml"
    path.write_text(
        f"daemon: {{listen: '127.0.0.1:{port}', state_path: '{tmp_path}/nocd.db'}}\n"
        "checks:\n  - {name: web, type: http, target: 'http://127.0.0.1:9/', interval: 1h}\n"
    )
    daemon = Daemon(load_file(path), config_path=path, notifier=Notifier(environ={}))
    await daemon.start()
    try:
        for name in ("alias_bomb", "deep_flow_list", "alias_to_itself"):
            path.write_text(HOSTILE_TEXTS[name][0])
            assert await daemon.reload() is False, name
            assert [c.name for c in daemon.config.checks] == ["web"]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 200
    finally:
        await daemon.stop()
