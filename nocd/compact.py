"""Share equal values between validated config models, so 50,000 checks fit in little memory.

A validated pydantic model holds a private `__dict__` (a full hash table per instance), a
`__pydantic_fields_set__` set and its own copy of every parsed value (`5s` → a new float,
an empty `labels` dict per check). At 50,000 checks that was ~1.9 KiB per check, over 100
MiB (bench/bench_memory.py). `Interner.model` rewrites a validated model in place:

- its `__dict__` becomes a key-sharing ("split") dict: CPython stores the field names once
  per class and only a values array per instance (~290 bytes instead of ~830 for 26 fields);
- `__pydantic_fields_set__` is one shared set per distinct set of explicitly given fields;
- equal values of immutable kinds (str, int, float, bytes, and tuples, frozensets, flat
  dicts and frozen models made of them) become one object per distinct value.

Only identities change: every value stays equal and of the same type, so attribute access,
`==` (reload compares old and new checks), `model_dump` and the API read the same. Config
objects are never mutated (models are frozen; nothing writes into their dicts), which is
what makes sharing a dict between checks safe. `model_copy` copies `__dict__` and the
fields set before changing them, so a copy never writes into a shared one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_SCALARS = (int, bytes)
_templates: dict[type[BaseModel], dict[str, Any]] = {}
_current: ContextVar[Interner | None] = ContextVar("nocd_compact_pool", default=None)


@contextmanager
def pooling() -> Iterator[None]:
    """Within this block, `compact` shares values through one new pool (one Config)."""
    token = _current.set(Interner())
    try:
        yield
    finally:
        _current.reset(token)


def compact(m: M) -> M:
    """Compact `m` through the current pool, if any (else leave it as pydantic made it).

    Called by each check as soon as it is validated: its bulky dict and fields set are
    freed at once and their memory reused for the next check, instead of 50,000 of them
    piling up first (~75 MiB of heap that a later pass would free but never give back).
    """
    pool = _current.get()
    return m if pool is None else pool.model(m)


def prepare(classes: Iterable[type[BaseModel]]) -> None:
    """Make each class's dict template now, before instances exist (call at import).

    CPython 3.11 shrinks a class's room for shared keys by one for each instance created
    (pydantic creates them without touching the keys), so a template made after ~30
    validations of a 26-field model no longer fits and falls back to a plain dict.
    """
    for cls in classes:
        _template(cls)


def _template(cls: type[BaseModel]) -> dict[str, Any]:
    """An instance dict of `cls` holding every field, in field order, as a split table."""
    tpl = _templates.get(cls)
    if tpl is None:
        blank = cls.__new__(cls)
        for name in cls.model_fields:
            # object.__setattr__ (not the model's) fills the instance's inline values, whose
            # keys CPython shares per class; reading __dict__ then gives a split-table dict.
            object.__setattr__(blank, name, None)
        tpl = _templates[cls] = blank.__dict__
    return tpl


class Interner:
    """One pool of canonical values; use one per validated Config and then drop it."""

    def __init__(self) -> None:
        self._pool: dict[tuple[Any, ...], Any] = {}
        # Keeps every object whose id() is part of a key alive while the pool lives.
        self._keep: list[Any] = []
        # ids of objects known canonical (pooled, or singletons like None and enum members):
        # most fields hold the very same default object in every check, a one-lookup case.
        self._canon_ids: set[int] = set()

    def _canonical(self, key: tuple[Any, ...], value: Any) -> Any:
        found = self._pool.setdefault(key, value)
        if found is value:
            self._keep.append(value)
            self._canon_ids.add(id(value))
        return found

    def value(self, v: Any) -> Any:
        """The canonical object equal to `v` (same type), or `v` itself when unshareable."""
        t = type(v)
        if t is str:
            found = self._pool.get((t, v))
            if found is None:
                # A fresh copy, not the parser's object: a str kept from the YAML parse
                # pins the 1 MiB allocator arena it was born in, amid the parse's garbage
                # (50,000 names and targets kept ~200 MiB resident after load_file).
                found = "".join((v, "")) if v else v
                self._pool[(t, found)] = found
                self._keep.append(found)
                self._canon_ids.add(id(found))
            return found
        if t in _SCALARS:
            return self._canonical((t, v), v)
        if t is float:
            if v != v:  # NaN: one shared NaN would compare equal to itself in a dict
                return v
            return self._canonical((t, v) if v else (t, str(v)), v)  # 0.0 and -0.0 apart
        if t is tuple:
            items = tuple([self.value(x) for x in v])
            return self._canonical((t, *map(id, items)), items)
        if t is frozenset:
            members = frozenset([self.value(x) for x in v])
            return self._canonical((t, frozenset(map(id, members))), members)
        if t is dict:
            if not v:
                return self._canonical((t,), v)
            pairs = [(self.value(k), self.value(x)) for k, x in v.items()]
            key = (t, *(id(p) for kv in pairs for p in kv))  # insertion order matters
            return self._canonical(key, dict(pairs))
        if isinstance(v, BaseModel) and v.model_config.get("frozen"):
            self.model(v)
            if v.__pydantic_extra__ or v.__pydantic_private__:
                return v
            key = (t, id(v.__pydantic_fields_set__), *map(id, v.__dict__.values()))
            return self._canonical(key, v)
        if v is None or t is bool or isinstance(v, Enum):
            self._canon_ids.add(id(v))  # alive anyway: singletons, members of their class
        return v  # lists, anything mutable or unknown: left alone

    def model(self, m: M) -> M:
        """Rewrite `m` in place: split-table `__dict__`, shared fields set and values."""
        own = m.__dict__
        values = list(own.values())
        ids = list(map(id, values))
        # Nearly every field holds an object already canonical (the same default in every
        # check): find the few that are not with set operations instead of a Python loop.
        for new in set(ids).difference(self._canon_ids):
            pos = ids.index(new)
            values[pos] = self.value(values[pos])
        compact = _template(type(m)).copy()
        compact.update(zip(own, values, strict=True))
        if len(compact) != len(own):  # not every field set: keep a plain dict
            compact = dict(zip(own, values, strict=True))
        object.__setattr__(m, "__dict__", compact)
        fs = m.__pydantic_fields_set__
        shared = self._canonical(("fields_set", frozenset(fs)), fs)
        object.__setattr__(m, "__pydantic_fields_set__", shared)
        return m
