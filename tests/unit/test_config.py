"""Config loading: one invalid fixture per validation rule with its exact message, valid examples."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from checks.registry import check_types
from nocd.configload import ConfigError, load_file, load_text

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "data" / "config_invalid"
FIXTURES = sorted(INVALID.glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (.+)$")


def expected_issues(path: Path) -> list[str]:
    """The `# expect:` header lines of a fixture, with {file} and {known_types} filled in."""
    known = ", ".join(repr(k) for k in check_types())
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _EXPECT.match(line)
        if not m:
            break
        out.append(m.group(1).replace("{file}", str(path)).replace("{known_types}", known))
    return out


def test_there_is_a_fixture_per_rule() -> None:
    # Guards against the glob silently finding nothing (a moved directory would pass vacuously).
    assert len(FIXTURES) >= 50
    for path in FIXTURES:
        assert expected_issues(path), f"{path.name} has no '# expect:' header"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_invalid_fixture_reports_exact_error(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCD_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert [str(i) for i in info.value.issues] == expected_issues(path)


# nocd.example.yaml names ${ENV} and file: secrets; test_example_config.py loads it with them set.
@pytest.mark.parametrize("name", ["demo.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    path = ROOT / "config" / name
    if not path.exists():
        pytest.skip(f"config/{name} not written yet")
    cfg = load_file(path)
    assert cfg.checks, "a shipped example without checks shows nothing"


def test_yaml_1_1_pitfalls_are_avoided() -> None:
    cfg = load_text(
        "sites:\n"
        "  oslo:\n"
        "    country: NO\n"  # YAML 1.1 reads this as False
        "    labels: {end: 17:30, on: yes, off: no}\n"  # 1.1: 1050, True, False
        "    devices:\n"
        "      pbx1: {country: NO, firmware: '6.2'}\n"
        "support_hours:\n"
        "  office:\n"
        "    timezone: Europe/Oslo\n"
        "    half_days:\n"
        "      - date: 2026-12-24\n"
        "        hours: [09:00-13:00]\n"
        "    weekly: {mon: [08:00-17:30]}\n"
    )
    site = cfg.sites["oslo"]
    assert site.country == "NO"
    assert site.devices["pbx1"].country == "NO"
    assert site.labels == {"end": "17:30", "on": "yes", "off": "no"}
    office = cfg.support_hours["office"]
    assert office.weekly == {"mon": ("08:00-17:30",)}
    assert office.half_days[0].hours == ("09:00-13:00",)


def test_time_like_scalar_is_never_sexagesimal() -> None:
    # A bare 17:30 where a time is expected must stay a time, never the integer 1050.
    cfg = load_text(
        "support_hours:\n  office:\n    timezone: UTC\n    weekly: {fri: [17:30-24:00]}\n"
    )
    from nocd.calendar_config import parse_range

    assert parse_range(cfg.support_hours["office"].weekly["fri"][0]) == (time(17, 30), None)


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "daemon:\n"
        "  listen: nope\n"
        "  bogus: 1\n"
        "checks:\n"
        "  - name: portal\n"
        "    type: http\n"
        "    target: ftp://portal.example.com\n"
        "    interval: 10x\n"
        "  - name: pbx\n"
        "    type: tcp\n"
        "    target: pbx.example.com:5060\n"
        "    retries: 0\n"
    )
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:2: daemon.listen: listen must be host:port, e.g. 127.0.0.1:9469",
        f"{path}:3: daemon.bogus: unknown key",
        f"{path}:7: checks[0].target: target must be an http:// or https:// URL",
        f"{path}:8: checks[0].interval: invalid duration '10x': write it like 30s, 5m, 1h30m or 250ms",
        f"{path}:12: checks[1].retries: Input should be greater than or equal to 1",
    ]


def test_cross_reference_errors_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "refs.yaml"
    path.write_text(
        "sites:\n"
        "  main-street: {customer: nobody}\n"
        "checks:\n"
        "  - {name: pbx, type: tcp, target: 'pbx.example.com:5060', site: elsewhere}\n"
        "  - {name: pbx, type: tcp, target: 'pbx.example.com:5061', depends_on: [uplink]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:2: sites.main-street.customer: unknown customer 'nobody'",
        f"{path}:4: checks[0].site: unknown site 'elsewhere'",
        f"{path}:5: checks[1].name: duplicate check name 'pbx' (first at checks[0])",
        f"{path}:5: checks[1].depends_on[0]: unknown check 'uplink'",
    ]


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "leak.yaml"
    path.write_text("api:\n  tokens:\n    - name: grafana\n      token: hunter2-s3cret\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert "hunter2" not in str(info.value)


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCD_TEST_API_TOKEN", "from-env")
    (tmp_path / "tok").write_text("from-file\n")
    cfg = load_text(
        "api:\n  tokens:\n"
        "    - {name: a, token: '${NOCD_TEST_API_TOKEN}'}\n"
        f"    - {{name: b, token: 'file:{tmp_path / 'tok'}'}}\n"
    )
    a, b = cfg.api.tokens
    assert a.token is not None and a.token.get_secret_value() == "from-env"
    assert b.token is not None and b.token.get_secret_value() == "from-file"
    assert "from-env" not in repr(cfg)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_file(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_empty_file_gives_defaults() -> None:
    cfg = load_text("")
    assert cfg.checks == ()
    assert cfg.daemon.listen == "127.0.0.1:9469"


def test_check_defaults_and_durations() -> None:
    cfg = load_text(
        "checks:\n"
        "  - {name: pbx, type: tcp, target: 'pbx.example.com:5060', interval: 1m30s, timeout: 250ms}\n"
    )
    chk = cfg.check("pbx")
    assert (chk.interval, chk.timeout, chk.retries) == (90.0, 0.25, 3)
    assert chk.effective_retry_interval == 30.0
    with pytest.raises(KeyError):
        cfg.check("nope")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nocd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_check_config_cli_ok_and_failing(tmp_path: Path) -> None:
    ok = _cli("check-config", "-c", str(ROOT / "config" / "demo.yaml"))
    assert ok.returncode == 0, ok.stderr
    # The demo grows; only the shape of the summary is pinned here.
    assert re.search(r": OK \(\d+ checks, \d+ sites\)$", ok.stdout.strip()), ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "daemon:\n  listen: nope\n"
        "checks:\n  - {name: pbx, type: tcp, target: pbx.example.com}\n"
        "  - {name: x y, type: tcp, target: 'pbx.example.com:1'}\n"
    )
    res = _cli("check-config", "-c", str(bad))
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0] == f"{bad}: invalid (3 problem(s)):"
    assert lines[1:] == [
        f"  {bad}:2: daemon.listen: listen must be host:port, e.g. 127.0.0.1:9469",
        f"  {bad}:4: checks[0].target: target must be host:port (e.g. pbx.example.com:5061)",
        f"  {bad}:5: checks[1].name: names are 1-128 characters of letters, digits, "
        "'_', '.', ':' or '-'",
    ]


def test_run_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("daemon:\n  listen: nope\n")
    res = _cli("run", "-c", str(bad))
    assert res.returncode == 1
    assert f"{bad}:2: daemon.listen:" in res.stderr
