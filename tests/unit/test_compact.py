"""Compacted check models: shared values and split dicts, yet equal, dumped and copied alike."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pydantic import ValidationError

from checks.sip.options import Config as SipOptions
from nocd.compact import Interner
from nocd.config import Config


def _checks(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": f"pbx-{i}",
            "type": "sip_options",
            # Each target its own str object, as a YAML parse gives.
            "target": "".join(["sip:pbx.example.com", ":5060"]),
            "timeout": "5s",
            "labels": {"team": "voice"},
            **extra,
        }
        for i in range(n)
    ]


def _plain(raw: dict[str, Any]) -> SipOptions:
    """The same check validated on its own (not compacted)."""
    return SipOptions.model_validate(raw)


def test_compacted_checks_equal_and_dump_like_plain_ones() -> None:
    raw = _checks(3, depends_on=["core"], ok_status=[404], severity_by_failure={"slow": "low"})
    cfg = Config.model_validate({"checks": raw})
    for got, r in zip(cfg.checks, raw, strict=True):
        want = _plain(r)
        assert got == want and want == got
        assert got.model_dump() == want.model_dump()
        assert got.model_dump(mode="json", exclude_unset=True) == want.model_dump(
            mode="json", exclude_unset=True
        )
        assert repr(got) == repr(want)
        assert got.model_fields_set == want.model_fields_set
        assert list(got.__dict__) == list(want.__dict__)
    # A changed check still differs (what SIGHUP reload relies on).
    changed = _plain({**raw[0], "timeout": "4s"})
    assert cfg.checks[0] != changed


def test_equal_values_are_shared_between_checks() -> None:
    raw = _checks(2)
    a, b = Config.model_validate({"checks": raw}).checks
    assert isinstance(a, SipOptions) and isinstance(b, SipOptions)
    # Strings are fresh copies: one kept from the input would pin the parser's memory.
    assert a.name == raw[0]["name"] and a.name is not raw[0]["name"]
    assert a.labels is b.labels and a.target is b.target and a.timeout is b.timeout
    assert a.severity_by_failure is b.severity_by_failure
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.name is not b.name


def test_instance_dict_is_a_key_sharing_table() -> None:
    (c,) = Config.model_validate({"checks": _checks(1)}).checks
    plain = _plain(_checks(1)[0])
    # CPython stores the field names once per class: the dict holds only the values.
    assert sys.getsizeof(c.__dict__) < sys.getsizeof(plain.__dict__) / 2


def test_values_of_different_types_never_merge() -> None:
    pool = Interner()
    one, one_f, true = pool.value(1), pool.value(1.0), pool.value(True)
    assert type(one) is int and type(one_f) is float and true is True
    assert pool.value((1,)) is not pool.value((1.0,))
    assert type(pool.value((1.0,))[0]) is float
    assert str(pool.value(-0.0)) == "-0.0" and str(pool.value(0.0)) == "0.0"
    first = pool.value({"a": "1", "b": "2"})
    assert pool.value({"b": "2", "a": "1"}) is not first  # key order kept
    assert pool.value({"a": "1", "b": "2"}) is first
    nan = float("nan")
    assert pool.value(nan) is nan


def test_copy_with_update_leaves_the_shared_objects_alone() -> None:
    a, b = Config.model_validate({"checks": _checks(2)}).checks
    c = a.model_copy(update={"retries": 5})
    assert c.retries == 5 and "retries" in c.model_fields_set
    assert "retries" not in a.model_fields_set and "retries" not in b.model_fields_set
    assert a.retries == b.retries == 3


def test_models_stay_frozen_and_validation_errors_unchanged() -> None:
    (c,) = Config.model_validate({"checks": _checks(1)}).checks
    with pytest.raises(ValidationError, match="frozen"):
        c.timeout = 1.0  # type: ignore[misc]
    bad = _checks(1, timeout="9m")
    with pytest.raises(ValidationError) as err:
        Config.model_validate({"checks": bad})
    with pytest.raises(ValidationError) as plain:
        SipOptions.model_validate(bad[0])
    assert err.value.errors()[0]["msg"] == plain.value.errors()[0]["msg"]
    assert err.value.errors()[0]["loc"][:2] == ("checks", 0)


def test_yaml_config_is_compacted_and_lone_checks_are_left_alone() -> None:
    from nocd.configload import load_text

    text = "checks:\n" + "".join(
        f"  - name: pbx-{i}\n    type: sip_options\n    target: sip:pbx.example.com\n"
        "    timeout: 5s\n    labels: {team: voice}\n"
        for i in range(2)
    )
    a, b = load_text(text).checks
    assert a.labels is b.labels and a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    # Outside a Config (no pool) a model stays exactly as pydantic built it.
    x, y = (_plain(r) for r in _checks(2))
    assert x.labels is not y.labels and x.__pydantic_fields_set__ is not y.__pydantic_fields_set__
