"""Load YAML (1.2, so `17:30` stays a string) into a validated Config with located errors.

Every error names the file, line and key path, and all errors are reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from nocd.config import Config

Loc = tuple[str | int, ...]

# Hostile-file bounds, checked before or right after parsing (issue #10, "bad input"):
MAX_CONFIG_CHARS = 16 << 20  # ~250,000 checks; a bigger file is a mistake or an attack
# nocd's schema nests ~8 deep. libyaml slows down quadratically with flow nesting (10,000
# `[` take 2.4 s) and its composer recurses in C: ~100,000 levels crash the process.
MAX_DEPTH = 64
# After expanding aliases: a "billion laughs" file of 1 KB expands to 10^9 nodes, which the
# conversion to plain types and validation would build and walk one by one.
MAX_NODES = 2_000_000


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a config file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config is invalid; `issues` holds every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def format_path(loc: Loc) -> str:
    """`('checks', 2, 'timeout')` → `checks[2].timeout`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(doc: Any, loc: Loc) -> int | None:
    """The 1-based line of the deepest node of `loc` found in the round-trip document."""
    node, line = doc, None
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _plain(node: Any) -> Any:
    """Round-trip nodes → plain dict/list/str/int so validation sees ordinary types."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _pydantic_loc(doc: Any, loc: Sequence[str | int]) -> Loc:
    """Drop the discriminator tag pydantic inserts (checks.0.http.timeout → checks.0.timeout)."""
    out: list[str | int] = []
    node = doc
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if node.get("type") == part:
                continue
        out.append(part)
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "union_tag_not_found":
        # pydantic says "Unable to extract tag using discriminator"; operators need the key.
        return f"missing key {err['ctx']['discriminator']}"
    if err["type"] == "union_tag_invalid":
        return msg.replace("Input tag", "unknown check type").replace(
            " found using 'type' does not match any of the expected tags:", "; known types:"
        )
    return msg


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML 1.2 text into a round-trip document; ConfigError on a syntax error."""
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            [ConfigIssue(file, line, "", f"YAML syntax error: {exc.problem or exc.context}")]
        ) from None
    except YAMLError as exc:
        raise ConfigError([ConfigIssue(file, None, "", f"YAML error: {exc}")]) from None


def _fast_parse(text: str, file: str) -> Any:
    """Parse with the C-accelerated safe loader (YAML 1.2); lines are found only on error."""
    yaml = YAML(typ="safe")
    yaml.version = (1, 2)
    try:
        return yaml.load(text)
    except YAMLError:
        return parse_yaml(text, file)  # the round-trip parser reports the syntax error


_QUOTED_OR_COMMENT = re.compile(
    # a quoted scalar where a token can start, or a comment: brackets there are not nesting
    r"""(?<![^\s\[{,:])(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*')|(?<!\S)#[^\n]*"""
)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INDENT = re.compile(r"\n( *+)(?=[^ \r\n#])")  # anchored on a literal: fast on huge files
_COMPACT = re.compile(r"\n *+((?:[-?] ++)++)")  # "- - - x": one level per marker


def _flow_depth(text: str) -> int:
    """Deepest `[`/`{` nesting, counted raw and with quoted scalars and comments removed."""
    raw = _NOT_BRACKET.sub("", text)
    if raw.count("[") + raw.count("{") <= MAX_DEPTH:
        return 0  # too few brackets to nest deeper, whatever quoting says (the usual case)
    worst = 0
    for brackets in (raw, _NOT_BRACKET.sub("", _QUOTED_OR_COMMENT.sub("", text))):
        depth = 0
        for ch in brackets:
            depth = depth + 1 if ch in "[{" else max(0, depth - 1)
            if depth > MAX_DEPTH:
                return depth  # enough to refuse; a hostile file may have millions more
            worst = max(worst, depth)
    return worst


def _block_depth(text: str) -> int:
    """An upper bound of block nesting: distinct indentations plus compact `- - ` markers."""
    text = "\n" + text
    levels = {len(indent) for indent in _INDENT.findall(text)}
    compact = max((len(m) for m in _COMPACT.findall(text)), default=0) // 2
    return len(levels) + compact


def check_shape(text: str, file: str) -> None:
    """Refuse, before any YAML parser runs, a file too big or nested too deeply to be a config."""
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigError(
            [
                ConfigIssue(
                    file, None, "", f"file too large: over {MAX_CONFIG_CHARS >> 20} MiB of text"
                )
            ]
        )
    depth = max(_flow_depth(text), _block_depth(text))
    if depth > MAX_DEPTH:
        raise ConfigError(
            [ConfigIssue(file, None, "", f"nested more than {MAX_DEPTH} levels deep")]
        )


def _expanded_size(data: Any, file: str) -> None:
    """Refuse aliases that expand to too many nodes, too deep, or into themselves."""
    sizes: dict[int, int] = {}  # id(container) → expanded node count; shared via aliases
    active: set[int] = set()

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError([ConfigIssue(file, None, "", "an alias refers to itself")])
        if depth > MAX_DEPTH:
            raise ConfigError(
                [ConfigIssue(file, None, "", f"aliases nest more than {MAX_DEPTH} levels deep")]
            )
        active.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1 + sum(size(child, depth + 1) for child in children)
        active.discard(key)
        if total > MAX_NODES:
            raise ConfigError(
                [
                    ConfigIssue(
                        file,
                        None,
                        "",
                        f"aliases expand to more than {MAX_NODES:,} values (a YAML alias bomb?)",
                    )
                ]
            )
        sizes[key] = total
        return total

    size(data, 0)


def load_text(text: str, file: str = "<config>") -> Config:
    """Validate YAML text into a Config, raising ConfigError with every issue found."""
    check_shape(text, file)
    data = _fast_parse(text, file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, 1, "", "the config must be a mapping of sections")])
    if "*" in text:  # only aliases can share nodes; without any, the size is the text's
        _expanded_size(data, file)
    data = _plain(data)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        doc = parse_yaml(text, file)  # round-trip parse only now, for line numbers
        issues = []
        for err in exc.errors():
            loc = _pydantic_loc(data, err["loc"])
            issues.append(ConfigIssue(file, _line_of(doc, loc), format_path(loc), _message(err)))
        raise ConfigError(issues) from None
    problems = list(cross_references(cfg))
    if problems:
        doc = parse_yaml(text, file)
        raise ConfigError(
            [ConfigIssue(file, _line_of(doc, loc), format_path(loc), msg) for loc, msg in problems]
        )
    return cfg


def load_file(path: str | Path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            # Bounded: a huge file (or /dev/zero) must not be read whole into memory.
            raw = f.read(MAX_CONFIG_CHARS + 1)
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_CONFIG_CHARS:
        raise ConfigError(
            [ConfigIssue(str(p), None, "", f"file too large: over {MAX_CONFIG_CHARS >> 20} MiB")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(p), None, "", "not UTF-8 text")]) from None
    if "\x00" in text:
        raise ConfigError([ConfigIssue(str(p), None, "", "binary data (NUL bytes), not YAML")])
    return load_text(text, str(p))


def cross_references(cfg: Config) -> Iterable[tuple[Loc, str]]:
    """Check names and references between sections (sites, plans, calendars, dependencies)."""
    calendars = set(cfg.support_hours)
    for key, cust in cfg.customers.items():
        if cust.support_plan and cust.support_plan not in cfg.support_plans:
            yield ("customers", key, "support_plan"), f"unknown support plan {cust.support_plan!r}"
    for key, site in cfg.sites.items():
        if site.customer and site.customer not in cfg.customers:
            yield ("sites", key, "customer"), f"unknown customer {site.customer!r}"
        if site.active_hours and site.active_hours not in calendars:
            yield ("sites", key, "active_hours"), f"unknown support_hours {site.active_hours!r}"
    for key, plan in cfg.support_plans.items():
        if plan.hours != "24x7" and plan.hours not in calendars:
            yield ("support_plans", key, "hours"), f"unknown support_hours {plan.hours!r}"
    seen: dict[str, int] = {}
    names = {c.name for c in cfg.checks}
    for i, chk in enumerate(cfg.checks):
        if chk.name in seen:
            yield (
                ("checks", i, "name"),
                f"duplicate check name {chk.name!r} (first at checks[{seen[chk.name]}])",
            )
        seen.setdefault(chk.name, i)
        if chk.site is not None and chk.site not in cfg.sites:
            yield ("checks", i, "site"), f"unknown site {chk.site!r}"
        if chk.device is not None:
            dev_site = cfg.sites.get(chk.site or "")
            if dev_site is None or chk.device not in dev_site.devices:
                yield ("checks", i, "device"), f"unknown device {chk.device!r} at site {chk.site!r}"
        if chk.active_hours and chk.active_hours not in calendars:
            yield ("checks", i, "active_hours"), f"unknown support_hours {chk.active_hours!r}"
        for j, dep in enumerate(chk.depends_on):
            if dep not in names:
                yield ("checks", i, "depends_on", j), f"unknown check {dep!r}"
            elif dep == chk.name:
                yield ("checks", i, "depends_on", j), "a check cannot depend on itself"
    yield from _dependency_cycles(cfg)
    yield from _paging_references(cfg)


def _paging_references(cfg: Config) -> Iterable[tuple[Loc, str]]:
    """Paging routes name real calendars, and Twilio has a public URL for its webhooks."""
    from paging.hours import check_calendar

    for key, cal in cfg.support_hours.items():
        try:
            check_calendar(cal)
        except ValueError as exc:
            yield ("support_hours", key), str(exc)
    routing = cfg.paging.routing
    routes: list[tuple[Loc, str | None]] = [
        (("paging", "routing", "default", "support_hours"), routing.default.support_hours)
    ]
    routes += [
        (("paging", "routing", "customers", k, "support_hours"), r.support_hours)
        for k, r in routing.customers.items()
    ]
    routes += [
        (("paging", "routing", "sites", k, "support_hours"), r.support_hours)
        for k, r in routing.sites.items()
    ]
    for loc, name in routes:
        if name is not None and name != "24x7" and name not in cfg.support_hours:
            known = ", ".join(["24x7", *sorted(cfg.support_hours)])
            # An unknown calendar would count as always closed: every critical would page.
            yield loc, f"unknown support_hours {name!r} (known: {known})"
    if cfg.paging.provider.type == "twilio" and cfg.daemon.public_url is None:
        yield (
            ("paging", "provider", "type"),
            "twilio needs daemon.public_url: Twilio fetches the call's TwiML and posts "
            "keypresses and SMS replies there",
        )


def _dependency_cycles(cfg: Config) -> Iterable[tuple[Loc, str]]:
    deps = {c.name: c.depends_on for c in cfg.checks}
    index = {c.name: i for i, c in enumerate(cfg.checks)}
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, trail: list[str]) -> list[str] | None:
        state[name] = 1
        for d in deps.get(name, ()):
            if d not in deps or d == name:
                continue
            if state.get(d) == 1:
                return [*trail, name, d]
            if state.get(d) is None:
                found = visit(d, [*trail, name])
                if found:
                    return found
        state[name] = 2
        return None

    for name in deps:
        if state.get(name) is None:
            cycle = visit(name, [])
            if cycle:
                start = cycle.index(cycle[-1])
                loop = " → ".join(cycle[start:])
                yield ("checks", index[name], "depends_on"), f"dependency cycle: {loop}"
                return
