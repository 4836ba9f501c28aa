"""SIP message parsing and building per RFC 3261 §7, robust against garbage (RFC 4475)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count

MAX_MESSAGE = 65535  # the largest UDP datagram; TCP readers apply the same bound
MAX_HEADERS = 256  # more than any real SIP message carries; bounds the work per input


class SipParseError(ValueError):
    """The input is not a SIP message this parser accepts; the only error parse() raises."""


# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_DIGITS = re.compile(r"^[0-9]+\Z")
_FOLD = re.compile(r"\r?\n[ \t]+")
_LINES = re.compile(r"\r?\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) (.*)$", re.IGNORECASE)
_VERSION = re.compile(r"^SIP/2\.0$", re.IGNORECASE)
_PARAM = re.compile(r";\s*([^\s;=,]+)\s*(?:=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s;,]*))?")
_VIA = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+([^\s;,]+)", re.I)


@dataclass(slots=True)
class SipMessage:
    """A parsed request (method, uri set) or response (status set) with its headers and body."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    # (lower-case long header name, value) in order; repeated headers stay repeated.
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""  # the bytes parsed, kept for `nocd probe --debug` transcripts

    @property
    def is_request(self) -> bool:
        """True for a request, False for a response."""
        return self.method is not None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case, compact or long form), or None."""
        key = _canonical(name)
        for k, v in self.headers:
            if k == key:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        """All values of header `name`, comma-separated lists split (quotes respected)."""
        key = _canonical(name)
        out: list[str] = []
        for k, v in self.headers:
            if k == key:
                out.extend(split_comma(v))
        return out

    def top_via_branch(self) -> str | None:
        """The branch parameter of the topmost Via, the transaction key (RFC 3261 §17.2.3)."""
        via = self.header("via")
        if via is None:
            return None
        via = via.lstrip(" \t,")  # only the first value matters: don't split them all
        if not via:  # a Via of only commas: no branch to match on
            return None
        first = _comma_parts(via)[0] if "," in via else via
        return params(first).get("branch")

    def cseq(self) -> tuple[int, str]:
        """CSeq as (number, method); raises SipParseError when missing or malformed."""
        value = self.header("cseq")
        parts = (value or "").split()
        # isdigit() alone accepts "²" and other Unicode digits that int() refuses.
        if len(parts) != 2 or not _DIGITS.match(parts[0]) or not _TOKEN.match(parts[1]):
            raise SipParseError(f"malformed CSeq {(value or '')[:80]!r}")
        digits = parts[0].lstrip("0") or "0"
        if len(digits) > 10:  # also keeps int() below Python's 4,300-digit limit
            raise SipParseError("CSeq number out of range")
        number = int(digits)
        if number >= 2**31:  # RFC 3261 §8.1.1.5: less than 2**31
            raise SipParseError("CSeq number out of range")
        return number, parts[1]


def _canonical(name: str) -> str:
    low = name.strip().lower()
    return COMPACT.get(low, low)


# What split_comma must look at: quoted strings (escapes honoured) and <...> sections (quotes
# inside honoured), each skipped whole, an unterminated one running to the end; then commas.
# The regex engine passes over everything else, so a 64 KB header costs a few milliseconds at
# most, not a Python loop per character.
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"?'
_SPLIT_SPECIAL = re.compile(rf'{_QUOTED}|<[^>"]*(?:{_QUOTED}[^>"]*)*>?|,', re.DOTALL)


def _comma_parts(value: str) -> list[str]:
    if '"' not in value and "<" not in value:
        return value.split(",")
    parts, start = [], 0
    for m in _SPLIT_SPECIAL.finditer(value):
        if m.group() == ",":
            parts.append(value[start : m.start()])
            start = m.end()
    parts.append(value[start:])
    return parts


def split_comma(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and angle brackets."""
    if "," not in value:
        return [value.strip()]
    return [p for p in (part.strip() for part in _comma_parts(value)) if p]


def params(value: str) -> dict[str, str]:
    """`;name=value` parameters of a header value (after any <uri>), names lower-cased."""
    tail = value[value.rfind(">") + 1 :] if "<" in value else value
    tail = tail[:8192]  # bound the regex work on hostile input
    out: dict[str, str] = {}
    for m in _PARAM.finditer(tail):
        out.setdefault(m.group(1).lower(), (m.group(2) or "").strip('"'))
    return out


def parse_via(value: str) -> tuple[str, str, dict[str, str]]:
    """One Via value as (transport, sent-by, params); raises SipParseError when malformed."""
    m = _VIA.match(value)
    if m is None:
        raise SipParseError(f"malformed Via {value[:80]!r}")
    return m.group(1).upper(), m.group(2), params(value[m.end() :])


def head_length(data: bytes) -> int:
    """Index just past the blank line ending the headers, or -1 when not there yet."""
    m = _HEAD_END.search(data)
    return -1 if m is None else m.end()


def parse(data: bytes, *, datagram: bool = True) -> SipMessage:
    """Parse one SIP message; raises only SipParseError.

    A datagram without Content-Length carries everything after the headers as body
    (RFC 3261 §18.3); bytes beyond Content-Length are ignored (RFC 4475 §3.1.1.8).
    """
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message larger than {MAX_MESSAGE} bytes")
    data = data.lstrip(b"\r\n")  # §7.5: ignore CRLFs before the start line
    end = head_length(data)
    if end < 0:
        raise SipParseError("no blank line ending the headers")
    head = data[:end].decode("utf-8", "replace")
    if "\n " in head or "\n\t" in head:
        head = _FOLD.sub(" ", head)
    head = head.rstrip("\r\n")
    # Fast path for the usual CRLF-only message; bare LFs (tolerated) take the regex.
    lines = head.split("\r\n") if head.count("\n") == head.count("\r\n") else _LINES.split(head)
    if len(lines) > MAX_HEADERS:
        raise SipParseError("too many header lines")
    msg = _start_line(lines[0])
    headers = msg.headers
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not _TOKEN.match(name):
            raise SipParseError(f"malformed header line {line[:60]!r}")
        low = name.lower()
        headers.append((COMPACT.get(low, low), value.strip(" \t")))
    msg.raw = data
    rest = data[end:]
    length = _content_length(msg)
    if length is None:
        if not datagram:
            raise SipParseError("Content-Length is required on stream transports")
        msg.body = rest
    elif length > len(rest):
        raise SipParseError(f"Content-Length {length} exceeds the {len(rest)} bytes present")
    else:
        msg.body = rest[:length]
    return msg


def _start_line(line: str) -> SipMessage:
    if line[:4].upper() == "SIP/":
        m = _STATUS.match(line)
        if m is None:
            raise SipParseError(f"malformed status line {line[:80]!r}")
        return SipMessage(status=int(m.group(1)), reason=m.group(2))
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise SipParseError(f"malformed request line {line[:80]!r}")
    if not _VERSION.match(parts[2]):
        raise SipParseError(f"unsupported SIP version {parts[2][:20]!r}")
    if parts[1][0] == "<" or ":" not in parts[1]:
        raise SipParseError(f"malformed Request-URI {parts[1][:80]!r}")
    return SipMessage(method=parts[0], uri=parts[1])


def _content_length(msg: SipMessage) -> int | None:
    values = {v for k, v in msg.headers if k == "content-length"}
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("conflicting Content-Length headers")
    (value,) = values
    if not _DIGITS.match(value) or len(value) > 9:
        raise SipParseError(f"invalid Content-Length {value[:20]!r}")
    return int(value)


_PREFIX = os.urandom(4).hex()
_COUNTER = count(1)


def new_token() -> str:
    """A process-unique token for branches, tags and Call-IDs (cheap: a counter)."""
    return f"{_PREFIX}{next(_COUNTER):x}"


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie prefix, §8.1.1.7)."""
    return f"z9hG4bK{_PREFIX}{next(_COUNTER):x}"


def build_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """Serialize a request; `via` is the full top Via value including its branch."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    lines.extend(f"{k}: {v}" for k, v in extra)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_response(
    request: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    received: tuple[str, int] | None = None,
) -> bytes:
    """A response to `request` copying Via/From/To/Call-ID/CSeq (RFC 3261 §8.2.6)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    first = True
    for k, v in request.headers:
        if k == "via":
            for via in split_comma(v):
                if first and received is not None:
                    via = _stamp_received(via, received)
                first = False
                lines.append(f"Via: {via}")
    for name in ("from", "to", "call-id", "cseq"):
        value = request.header(name)
        if value is None:
            continue
        if name == "to" and to_tag and "tag" not in params(value):
            value = f"{value};tag={to_tag}"
        lines.append(f"{_pretty(name)}: {value}")
    lines.extend(f"{k}: {v}" for k, v in extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _stamp_received(via: str, source: tuple[str, int]) -> str:
    """Add received= and fill rport (RFC 3261 §18.2.1, RFC 3581 §4)."""
    host, port = source
    via = re.sub(r";\s*rport(?=[;\s]|$)", f";rport={port}", via, count=1, flags=re.I)
    return f"{via};received={host}"


def _pretty(name: str) -> str:
    return {"call-id": "Call-ID", "cseq": "CSeq"}.get(name, name.title())
