"""config/nocd.example.yaml loads, shows every check type and key; docs/config.md is current."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from checks.base import CheckConfig
from checks.registry import check_types
from nocd.config import Config
from nocd.configload import load_file
from nocd.tickets.registry import sink_types
from paging.routing import check_calendars

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "nocd.example.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")
ENV_REFS = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", TEXT)))
FILE_REFS = sorted(set(re.findall(r"\bfile:([^\s\"',\]}#]+)", TEXT)))
# A key as written in block style (`key:`, `- key:`, or commented out `# key:`) or in a flow map.
_KEY = re.compile(r"^\s*(?:#\s*)?(?:-\s+)?([a-z_][a-z0-9_]*):(?=\s|$)|[{,]\s*([a-z_][a-z0-9_]*):\s")
SECRET = "example-secret-value-42"  # SNMPv3 pass phrases need at least 8 characters


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Every `${VAR}` the example names set, every relative `file:` a credential file."""
    env = {name: f"{SECRET}-{name}" for name in ENV_REFS}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for ref in FILE_REFS:
        assert not ref.startswith("/"), f"file:{ref}: use $CREDENTIALS_DIRECTORY-relative names"
        (tmp_path / ref).write_text(f"{SECRET}-{ref}\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    return {**env, "CREDENTIALS_DIRECTORY": str(tmp_path)}


def keys_in(text: str) -> set[str]:
    """Every key written in `text`, including commented-out ones."""
    out: set[str] = set()
    for line in text.splitlines():
        for m in _KEY.finditer(line):
            out.add(m.group(1) or m.group(2))
    return out


def check_blocks() -> dict[str, str]:
    """The text of the examples of each check type (with their commented keys)."""
    section = re.search(r"^checks:\n(.*?)^(?=[a-z])", TEXT, re.S | re.M)
    assert section is not None
    blocks: dict[str, str] = {}
    for block in re.split(r"^  - name: ", section.group(1), flags=re.M)[1:]:
        m = re.search(r"^    type: (\S+)", block, re.M)
        assert m is not None, f"no type in example check {block.splitlines()[0]!r}"
        blocks[m.group(1)] = blocks.get(m.group(1), "") + block
    return blocks


def models_under(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    """Collect every model reachable from `model`'s fields."""
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        stack: list[Any] = [info.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                models_under(ann, seen)
            elif not isinstance(ann, type) or isinstance(ann, types.GenericAlias):
                stack.extend(get_args(ann))


def test_example_loads_with_its_secrets(secrets_env: dict[str, str]) -> None:
    assert ENV_REFS and FILE_REFS, "the example should show both kinds of secret reference"
    cfg = load_file(EXAMPLE)
    # The loader does not check paging routes' calendars; the daemon does, so check them here.
    check_calendars(cfg.paging, cfg.support_hours)
    assert cfg.paging.provider.type == "twilio"
    assert cfg.paging.provider.auth_token.get_secret_value() == f"{SECRET}-twilio-auth-token"
    dumped = repr(cfg)
    assert SECRET not in dumped, "a secret value leaked into the config's repr"


def test_example_names_are_fictional() -> None:
    hosts = re.findall(r"https?://([^/:\s\"']+)", TEXT)
    hosts += re.findall(r"[\w.-]+@([\w-]+(?:\.[\w-]+)+)", TEXT)
    assert hosts and all(h == "example.com" or h.endswith(".example.com") for h in hosts), hosts
    numbers = re.findall(r"\+\d{8,15}", TEXT)
    assert numbers and all(re.fullmatch(r"\+155501\d\d", n) for n in numbers), numbers


def test_every_check_type_has_an_example() -> None:
    assert set(check_blocks()) == set(check_types())


def test_every_top_level_section_is_present() -> None:
    for name in Config.model_fields:
        assert re.search(rf"^{name}:", TEXT, re.M), f"top-level `{name}:` missing"


def test_every_check_type_key_is_shown_in_its_example() -> None:
    blocks = check_blocks()
    for key, ct in check_types().items():
        own = {f for f in ct.config.model_fields if f not in CheckConfig.model_fields}
        missing = own - keys_in(blocks[key])
        assert not missing, f"{key} example lacks {sorted(missing)}"
    common = set(CheckConfig.model_fields) - keys_in(TEXT)
    assert not common, f"common check keys never shown: {sorted(common)}"


def test_every_other_key_is_shown() -> None:
    seen: set[type[BaseModel]] = set()
    models_under(Config, seen)
    for st in sink_types().values():
        models_under(st.config, seen)
    shown = keys_in(TEXT)
    for model in seen:
        if issubclass(model, CheckConfig):
            continue  # per type, above
        missing = set(model.model_fields) - shown
        assert not missing, f"{model.__module__}.{model.__name__}: {sorted(missing)} not shown"


def test_check_config_cli_accepts_the_example(secrets_env: dict[str, str]) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "nocd", "check-config", "-c", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **secrets_env},
    )
    assert res.returncode == 0, res.stderr
    assert re.search(r": OK \(\d+ checks, 2 sites\)$", res.stdout.strip()), res.stdout


def test_check_config_cli_names_a_missing_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_REFS}
    env.pop("CREDENTIALS_DIRECTORY", None)
    res = subprocess.run(
        [sys.executable, "-m", "nocd", "check-config", "-c", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert res.returncode == 1
    assert "environment variable NOCD_TRAP_COMMUNITY is not set" in res.stderr


def test_config_reference_is_generated_from_the_models() -> None:
    script = ROOT / "scripts" / "gen_config_docs.py"
    spec = importlib.util.spec_from_file_location("gen_config_docs", script)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text, missing = gen.render()
    assert not missing, f"keys without a meaning (describe them): {missing}"
    current = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert current == text, "docs/config.md is stale: run scripts/gen_config_docs.py"
    for key in check_types():
        assert f"type: `{key}`" in text
