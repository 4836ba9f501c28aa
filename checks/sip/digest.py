"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616 algorithms per RFC 8760)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from checks.sip.message import SipMessage, SipParseError

_PARAM = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^,\s]*)\s*,?")
MAX_CHALLENGE = 4096  # bounds regex work on hostile headers
MAX_CHALLENGES = 16  # servers offer one per algorithm; a reply with 250 must not cost 250 parses

# Strongest first (RFC 8760 §2.4: prefer the strongest algorithm offered).
_HASHES: dict[str, Callable[[bytes], str]] = {
    "SHA-512-256": lambda b: hashlib.new("sha512_256", b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
}
ALGORITHMS = tuple(_HASHES) + tuple(f"{a}-sess" for a in _HASHES)


class ChallengeError(ValueError):
    """The server's challenge is missing, malformed or uses nothing we support."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge from a WWW-Authenticate or Proxy-Authenticate header."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # 407 Proxy-Authenticate → answer with Proxy-Authorization

    @property
    def rank(self) -> int:
        """Preference order: lower is stronger."""
        base = self.algorithm.upper().removesuffix("-SESS")
        return list(_HASHES).index(base)


def parse_challenge(value: str, proxy: bool = False) -> Challenge:
    """Parse one `Digest realm=..., nonce=...` value; raises ChallengeError."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ChallengeError(f"unsupported authentication scheme {scheme[:20]!r}")
    fields: dict[str, str] = {}
    for m in _PARAM.finditer(rest[:MAX_CHALLENGE]):
        raw = m.group(2)
        if raw.startswith('"'):
            if len(raw) < 2 or not raw.endswith('"'):
                raise ChallengeError(f"unterminated quoted string in {m.group(1)[:20]!r}")
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        fields.setdefault(m.group(1).lower(), raw)
    if "realm" not in fields or "nonce" not in fields:
        raise ChallengeError("digest challenge without realm or nonce")
    algorithm = fields.get("algorithm", "MD5")
    if algorithm.upper() not in (a.upper() for a in ALGORITHMS):
        raise ChallengeError(f"unsupported digest algorithm {algorithm[:30]!r}")
    qop = tuple(q.strip().lower() for q in fields.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise ChallengeError(f"unsupported qop {fields['qop'][:30]!r} (only auth is)")
    return Challenge(
        fields["realm"],
        fields["nonce"],
        algorithm,
        qop,
        fields.get("opaque"),
        fields.get("stale", "").lower() == "true",
        proxy,
    )


def best_challenge(msg: SipMessage) -> Challenge:
    """The strongest supported Digest challenge of a 401/407; raises ChallengeError."""
    proxy = msg.status == 407
    name = "proxy-authenticate" if proxy else "www-authenticate"
    found: list[Challenge] = []
    errors: list[str] = []
    offered = [value for key, value in msg.headers if key == name]
    for value in offered[:MAX_CHALLENGES]:
        try:
            found.append(parse_challenge(value, proxy))
        except (ChallengeError, SipParseError) as exc:
            errors.append(str(exc))
    if not found:
        raise ChallengeError("; ".join(errors) or f"{msg.status} without a {name} header")
    return min(found, key=lambda c: c.rank)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_response(
    ch: Challenge,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> tuple[str, str]:
    """(header name, header value) answering `ch` (RFC 7616 §3.4.1)."""
    base = ch.algorithm.upper().removesuffix("-SESS")
    h = _HASHES[base]
    cnonce = cnonce or os.urandom(8).hex()
    ha1 = h(f"{username}:{ch.realm}:{password}".encode())
    if ch.algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{ch.nonce}:{cnonce}".encode())
    ha2 = h(f"{method}:{uri}".encode())
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(ch.realm)}",
        f"nonce={_quote(ch.nonce)}",
        f"uri={_quote(uri)}",
    ]
    if "auth" in ch.qop:
        ncs = f"{nc:08x}"
        response = h(f"{ha1}:{ch.nonce}:{ncs}:{cnonce}:auth:{ha2}".encode())
        parts += [
            f"response={_quote(response)}",
            "qop=auth",
            f"nc={ncs}",
            f"cnonce={_quote(cnonce)}",
        ]
    else:
        response = h(f"{ha1}:{ch.nonce}:{ha2}".encode())
        parts.append(f"response={_quote(response)}")
    parts.append(f"algorithm={ch.algorithm}")
    if ch.opaque is not None:
        parts.append(f"opaque={_quote(ch.opaque)}")
    name = "Proxy-Authorization" if ch.proxy else "Authorization"
    return name, "Digest " + ", ".join(parts)
