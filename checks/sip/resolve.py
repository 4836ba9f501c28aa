"""SIP target URIs and server location per RFC 3263 (SRV, then A/AAAA) with dnspython."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from functools import cache, lru_cache

import dns.asyncresolver
import dns.exception
import dns.resolver

TRANSPORTS = ("UDP", "TCP", "TLS")
_SRV_PREFIX = {"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}
_URI = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@;?]+)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(?:;[^;?]*)*)(?:\?.*)?$",
    re.IGNORECASE,
)


class ResolveError(Exception):
    """The target's host name did not resolve to any usable address."""


@dataclass(frozen=True, slots=True)
class SipUri:
    """The parts of a sip:/sips: URI a prober needs."""

    scheme: str
    user: str | None
    host: str  # without IPv6 brackets
    port: int | None
    params: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def transport(self) -> str | None:
        """The transport named by the URI (`;transport=`), upper-case, or None."""
        value = self.params.get("transport")
        return value.upper() if value else None

    @property
    def host_literal(self) -> str:
        """The host as written in a URI (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def hostport(self) -> str:
        """host[:port] as written in a URI."""
        return self.host_literal if self.port is None else f"{self.host_literal}:{self.port}"


@lru_cache(maxsize=65536)
def parse_uri(text: str) -> SipUri:
    """Parse `sip:[user@]host[:port][;params]`; raises ValueError with a clear message."""
    m = _URI.match(text.strip())
    if m is None:
        raise ValueError(f"not a sip: or sips: URI: {text!r} (e.g. sip:pbx.example.com:5060)")
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    params: dict[str, str] = {}
    for item in m.group("params").split(";"):
        if item:
            key, _, value = item.partition("=")
            params[key.lower()] = value
    uri = SipUri(
        m.group("scheme").lower(), m.group("user"), m.group("host").strip("[]"), port, params
    )
    if uri.transport is not None and uri.transport not in TRANSPORTS:
        raise ValueError(f"unsupported transport {uri.transport!r}; use udp, tcp or tls")
    if uri.scheme == "sips" and uri.transport == "UDP":
        raise ValueError("sips: URIs cannot use transport=udp")
    return uri


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send: transport, IP address, port, and how it was found."""

    transport: str
    ip: str
    port: int
    family: int
    how: str  # literal | srv | a
    server_name: str  # the name TLS verifies (the URI host, per RFC 5922)

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.family == socket.AF_INET6 else self.ip
        return f"{self.transport.lower()}:{host}:{self.port}"


def _default_port(transport: str) -> int:
    return 5061 if transport == "TLS" else 5060


def _literal_family(host: str) -> int | None:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


@cache
def default_resolver() -> dns.asyncresolver.Resolver:
    """The system resolver (reads /etc/resolv.conf once)."""
    return dns.asyncresolver.Resolver()


def literal_destination(uri: SipUri) -> Destination | None:
    """The destination of an IP-literal URI without any lookup (the hot path), else None."""
    family = _literal_family(uri.host)
    if family is None:
        return None
    transport = uri.transport or ("TLS" if uri.scheme == "sips" else "UDP")
    port = uri.port or _default_port(transport)
    return Destination(transport, uri.host, port, family, "literal", uri.host)


async def resolve(
    uri: SipUri, lifetime: float, resolver: dns.asyncresolver.Resolver | None = None
) -> Destination:
    """Locate the server for `uri` per RFC 3263 §4 (NAPTR is skipped: SRV, then A/AAAA)."""
    literal = literal_destination(uri)
    if literal is not None:
        return literal
    res = resolver or default_resolver()
    secure = uri.scheme == "sips"
    if uri.port is not None:
        # §4.2: an explicit port means no SRV lookup.
        transport = uri.transport or ("TLS" if secure else "UDP")
        return await _address(uri.host, uri.port, transport, "a", uri.host, lifetime, res)
    if uri.transport is not None:
        order = [uri.transport]
    else:
        order = ["TLS"] if secure else ["UDP", "TCP", "TLS"]
    for transport in order:
        target = await _srv(_SRV_PREFIX[transport] + uri.host, lifetime, res)
        if target is not None:
            host, port = target
            return await _address(host, port, transport, "srv", uri.host, lifetime, res)
    transport = order[0]
    return await _address(
        uri.host, _default_port(transport), transport, "a", uri.host, lifetime, res
    )


async def _srv(
    name: str, lifetime: float, res: dns.asyncresolver.Resolver
) -> tuple[str, int] | None:
    try:
        answer = await res.resolve(name, "SRV", lifetime=max(lifetime, 0.05))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.Timeout:
        raise TimeoutError(f"DNS SRV lookup of {name} timed out") from None
    except dns.exception.DNSException as exc:
        raise ResolveError(f"SRV lookup of {name} failed: {exc}") from None
    records = [r for r in answer if str(r.target) != "."]
    if not records:
        return None
    # RFC 2782: lowest priority first; among equals the heaviest (a deterministic choice).
    best = min(records, key=lambda r: (r.priority, -r.weight))
    return str(best.target).rstrip("."), int(best.port)


async def _address(
    host: str,
    port: int,
    transport: str,
    how: str,
    server_name: str,
    lifetime: float,
    res: dns.asyncresolver.Resolver,
) -> Destination:
    family = _literal_family(host)
    if family is not None:
        return Destination(transport, host, port, family, how, server_name)
    last: Exception | None = None
    for rdtype, fam in (("A", socket.AF_INET), ("AAAA", socket.AF_INET6)):
        try:
            answer = await res.resolve(host, rdtype, lifetime=max(lifetime, 0.05))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
            last = exc
            continue
        except dns.exception.Timeout:
            raise TimeoutError(f"DNS lookup of {host} timed out") from None
        except dns.exception.DNSException as exc:
            raise ResolveError(f"lookup of {host} failed: {exc}") from None
        for record in answer:
            return Destination(transport, record.address, port, fam, how, server_name)
    if host == "localhost" or host.endswith(".localhost"):
        # Not in DNS but always loopback (RFC 6761 §6.3); /etc/hosts agrees.
        return Destination(transport, "127.0.0.1", port, socket.AF_INET, how, server_name)
    raise ResolveError(f"{host} has no A or AAAA record ({type(last).__name__})")


async def wait_resolve(uri: SipUri, deadline: float) -> Destination:
    """resolve() bounded by an absolute loop-time deadline."""
    loop = asyncio.get_running_loop()
    return await resolve(uri, max(0.0, deadline - loop.time()))
