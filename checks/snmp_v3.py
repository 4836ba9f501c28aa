"""SNMP v3 GETs through pysnmp's hlapi engine (USM: discovery, keys, timeliness)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from checks.resources import shared
from checks.snmp_ber import Reply
from checks.snmp_common import V3Credentials, error_class, plain_value
from checks.snmp_v2c import numeric
from nocd.model import FailureClass

if TYPE_CHECKING:
    from checks.snmp import Config


class SnmpFailure(Exception):
    """The engine reported an error indication (auth, timeout, parse...)."""

    def __init__(self, failure: FailureClass, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


def _engines() -> dict[Any, Any]:
    async def close(engines: dict[Any, Any]) -> None:
        for engine in engines.values():
            engine.close_dispatcher()
        engines.clear()

    return shared("snmp.engines", dict, close)


def _engine_and_auth(creds: V3Credentials) -> tuple[Any, Any]:
    # One engine per distinct v3 credential set, because pysnmp keeps one USM entry per
    # user name and two devices may share a name with different keys.
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    engines = _engines()
    key = ("v3", *creds.identity())
    if key not in engines:
        engines[key] = SnmpEngine()
    return engines[key], creds.usm_user_data()


def forget_peer(engine: Any, address: Any) -> None:
    """Drop pysnmp's cached v3 engine ID for one agent so the next request rediscovers it."""
    # pysnmp keeps a peer's engine ID for 300 s; when a device is replaced or reset its ID
    # changes and every request fails until then. Its cache has no public API.
    for mp in engine.message_processing_subsystems.values():
        cache = getattr(mp, "_SnmpV3MessageProcessingModel__engineIdCache", None)
        queue = getattr(mp, "_SnmpV3MessageProcessingModel__engineIdCacheExpQueue", None)
        if not isinstance(cache, dict) or not isinstance(queue, dict):
            continue
        stale = [k for k in cache if tuple(k[1]) == tuple(address)]
        for k in stale:
            del cache[k]
            for keys in queue.values():
                while k in keys:
                    keys.remove(k)


async def get(cfg: Config, host: str, port: int, oids: list[str], deadline: float) -> Reply:
    """One v3 GET by the hlapi; TimeoutError at `deadline`, SnmpFailure on engine errors."""
    from pysnmp.hlapi.v3arch.asyncio import ContextData, get_cmd

    assert cfg.v3 is not None
    attempts = cfg.snmp_retries + 1
    # Derived from the configured timeout (not time left) so pysnmp's target table,
    # keyed by timeout, stays the same size however late a probe starts.
    per_try = max(0.1, round(cfg.timeout * 0.95 / attempts, 2))
    engine, auth = _engine_and_auth(cfg.v3)
    target: Any = None
    try:
        async with asyncio.timeout_at(deadline):
            target = await _target(host, port, per_try, cfg.snmp_retries)
            err_ind, err_status, err_index, var_binds = await get_cmd(
                engine,
                auth,
                target,
                ContextData(contextName=cfg.v3.context.encode()),
                *_object_types(engine, tuple(oids)),
                lookupMib=False,
            )
    except TimeoutError:
        if target is not None:
            forget_peer(engine, target.transport_address)
        raise
    if err_ind is not None:
        fc = error_class(err_ind)
        if fc in (FailureClass.TIMEOUT, FailureClass.AUTH):
            forget_peer(engine, target.transport_address)
        if fc is FailureClass.TIMEOUT:
            raise TimeoutError
        raise SnmpFailure(fc, f"SNMP error: {err_ind}")
    return Reply(int(err_status), int(err_index), [(str(n), plain_value(v)) for n, v in var_binds])


def _object_types(engine: Any, oids: tuple[str, ...]) -> tuple[Any, ...]:
    # The hlapi resolves every ObjectType against its MIB view on each request (~20% of a
    # GET's CPU) unless it already is: keep the resolved ones in the engine's own cache.
    from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType
    from pysnmp.hlapi.varbinds import CommandGeneratorVarBinds

    cache: dict[tuple[str, ...], tuple[Any, ...]] = engine.cache.setdefault("nocd.varbinds", {})
    found = cache.get(oids)
    if found is None:
        if len(cache) > 1024:  # bounded: configs come and go over reloads
            cache.clear()
        found = CommandGeneratorVarBinds().make_varbinds(
            engine.cache, tuple(ObjectType(ObjectIdentity(o)) for o in oids)
        )
        cache[oids] = found
    return found


async def _target(host: str, port: int, per_try: float, retries: int) -> Any:
    # Creating a target resolves its address through the loop's executor (a thread hop per
    # GET, ~1 ms of CPU here); a literal address never changes, so its target is kept.
    from pysnmp.hlapi.v3arch.asyncio import Udp6TransportTarget, UdpTransportTarget

    target_cls = Udp6TransportTarget if ":" in host else UdpTransportTarget
    if numeric(host, port) is None:  # a name: resolved per GET, so DNS changes are followed
        return await target_cls.create((host, port), timeout=per_try, retries=retries)
    targets = _targets()
    key = (host, port, per_try, retries)
    found = targets.get(key)
    if found is None:
        if len(targets) > 4096:  # bounded: configs come and go over reloads
            targets.clear()
        found = await target_cls.create((host, port), timeout=per_try, retries=retries)
        targets[key] = found
    return found


def _targets() -> dict[tuple[str, int, float, int], Any]:
    async def _noop(_: dict[tuple[str, int, float, int], Any]) -> None:
        return None

    return shared("snmp.v3.targets", dict, _noop)
