"""SNMP v2c GET messages on the wire: pre-encoded requests (pysnmp) and strict reply parsing."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from checks.snmp_common import octets_value, plain_value

# The pysnmp/pyasn1 encoder costs ~0.6 ms per request and decoding a whole reply ~1 ms: more
# than the rest of a probe. So a request is encoded once per (community, OIDs) with pysnmp
# and only its request-id bytes change; a reply's framing (a handful of TLVs whose layout
# RFC 3416 fixes) is walked here. Values of the kinds nearly every poll returns (the
# INTEGER family, OCTET STRING, the "no such" exceptions) are read directly — pyasn1 took
# ~70 us per value for what is int.from_bytes — with pysnmp's range checks; every other
# kind (IpAddress, OID, Opaque, ...) goes through pyasn1's decoder as its pysnmp type.
# tests/unit/test_snmp_ber.py checks both give what pyasn1 + plain_value give.

REQUEST_ID_MIN = 0x0100_0000  # ids in this range always encode as 4 content bytes,
REQUEST_ID_MAX = 0x7FFF_FFFF  # so one template fits every request-id
_RESPONSE_PDU = 0xA2
_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTETS = 0x04
_OID = 0x06
_SNMP_V2C = 1
_INT_RANGES = {  # value tag → pysnmp's range: Integer32, Counter32, Gauge32, TimeTicks, Counter64
    0x02: (-(1 << 31), (1 << 31) - 1),
    0x41: (0, (1 << 32) - 1),
    0x42: (0, (1 << 32) - 1),
    0x43: (0, (1 << 32) - 1),
    0x46: (0, (1 << 64) - 1),
}
_EXCEPTIONS = {0x80: "NoSuchObject", 0x81: "NoSuchInstance", 0x82: "EndOfMibView"}

Plain = tuple[str, int | float | None, bool]  # (text, number or None, absent?) as plain_value


class MalformedReply(ValueError):
    """A datagram that is not a well-formed SNMP v2c Response-PDU."""


@dataclass(frozen=True, slots=True)
class Template:
    """An encoded GET request whose request-id sits at `id_at` (4 bytes, big-endian)."""

    packet: bytes
    id_at: int
    community: bytes
    oids: tuple[str, ...]
    oid_by_tlv: dict[bytes, str]  # each requested OID's encoding → its dotted form

    def with_request_id(self, request_id: int) -> bytes:
        """The request with `request_id` (REQUEST_ID_MIN..REQUEST_ID_MAX) patched in."""
        p = self.packet
        return p[: self.id_at] + request_id.to_bytes(4, "big") + p[self.id_at + 4 :]


@dataclass(frozen=True, slots=True)
class Reply:
    """A parsed Response-PDU: error status/index and (OID, plain value) varbinds."""

    status: int
    index: int
    varbinds: list[tuple[str, Plain]]

    @property
    def status_name(self) -> str:
        """The error status as RFC 3416 names it (`noSuchName`, `genErr`, ...)."""
        from pysnmp.proto.rfc1905 import errorStatus

        return str(errorStatus.clone(self.status).prettyPrint())


def _encode(community: bytes, oids: tuple[str, ...], request_id: int) -> bytes:
    from pyasn1.codec.ber import encoder  # type: ignore[import-untyped]
    from pysnmp.proto.api import v2c

    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_varbinds(pdu, [(oid, v2c.null) for oid in oids])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@functools.lru_cache(maxsize=4096)
def template(community: bytes, oids: tuple[str, ...]) -> Template:
    """The GET request for these OIDs, encoded once by pysnmp (checks sharing them share it)."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.api import v2c

    # Two encodings that differ only in the request-id show exactly where it sits.
    a = _encode(community, oids, 0x0101_0101)
    b = _encode(community, oids, 0x7E7E_7E7E)
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    at = diff[0]
    if diff != list(range(at, at + 4)) or a[at - 2 : at] != bytes((_INTEGER, 4)):
        raise AssertionError("request-id not found in the encoded GET")  # pysnmp changed
    tlvs = {bytes(encoder.encode(v2c.ObjectIdentifier(oid))): oid for oid in oids}
    return Template(a, at, community, oids, tlvs)


def _tlv(
    data: bytes, pos: int, end: int, tag: int | None, *, lenient: bool = False
) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at `pos`, which must lie within `end`.

    `lenient`: the header must lie within `end`, the content may run past it.
    """
    if pos + 2 > end:
        raise MalformedReply("truncated")
    t = data[pos]
    if tag is not None and t != tag:
        raise MalformedReply(f"tag 0x{t:02x} where 0x{tag:02x} belongs")
    if t & 0x1F == 0x1F:
        raise MalformedReply("multi-byte tag")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        width = n & 0x7F
        if width == 0 or width > 4:  # indefinite length, or larger than any datagram
            raise MalformedReply("unsupported length form")
        if pos + width > end:
            raise MalformedReply("truncated")
        n = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    if pos + n > end and not lenient:
        raise MalformedReply("truncated")
    return t, pos, pos + n


def _int(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """An INTEGER's value and the position after it."""
    _, start, stop = _tlv(data, pos, end, _INTEGER)
    if not 0 < stop - start <= 8:
        raise MalformedReply("bad INTEGER length")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def peek(data: bytes) -> tuple[int, bytes, int, str]:
    """(request-id, community, offset of error-status, framing problem or "") of a reply.

    The outer lengths are only reported, not enforced, so that a truncated reply can still
    be matched to its GET and told apart from someone else's garbage.
    """
    size = len(data)
    _, pos, end = _tlv(data, 0, size, _SEQUENCE, lenient=True)
    version, pos = _int(data, pos, size)
    if version != _SNMP_V2C:
        raise MalformedReply(f"SNMP version {version}, not v2c")
    _, start, pos = _tlv(data, pos, size, _OCTETS)
    community = data[start:pos]
    _, pos, pdu_end = _tlv(data, pos, size, _RESPONSE_PDU, lenient=True)
    request_id, pos = _int(data, pos, size)
    problem = ""
    if max(end, pdu_end) > size:
        problem = "truncated"
    elif end != size or pdu_end != size:
        problem = "trailing bytes after the PDU"
    return request_id, community, pos, problem


def parse(data: bytes, pos: int, tpl: Template) -> Reply:
    """The rest of a Response-PDU from `pos` (error-status): status, index and varbinds."""
    end = len(data)
    status, pos = _int(data, pos, end)
    index, pos = _int(data, pos, end)
    _, pos, list_end = _tlv(data, pos, end, _SEQUENCE)
    if list_end != end:
        raise MalformedReply("trailing bytes after the varbinds")
    varbinds: list[tuple[str, Plain]] = []
    while pos < list_end:
        _, vb, vb_end = _tlv(data, pos, list_end, _SEQUENCE)
        _, _, oid_end = _tlv(data, vb, vb_end, _OID)
        oid_tlv = data[vb:oid_end]
        oid = tpl.oid_by_tlv.get(oid_tlv) or _decode_oid(oid_tlv)
        tag, start, value_end = _tlv(data, oid_end, vb_end, None)
        if value_end != vb_end:
            raise MalformedReply("trailing bytes in a varbind")
        varbinds.append((oid, plain(tag, data[start:value_end], data[oid_end:value_end])))
        pos = vb_end
    return Reply(status, index, varbinds)


def _decode_oid(tlv: bytes) -> str:
    # An OID the request did not ask for (agents echo the requested ones): decode it anyway.
    from pyasn1.codec.ber import decoder
    from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
    from pysnmp.proto.rfc1902 import ObjectName

    try:
        value, rest = decoder.decode(tlv, asn1Spec=ObjectName())
    except PyAsn1Error as exc:
        raise MalformedReply(f"bad OID: {exc}") from None
    if rest:
        raise MalformedReply("trailing bytes in an OID")
    return str(value)


@functools.cache
def _value_types() -> dict[int, Any]:
    """Varbind value tag byte → the pysnmp type the hlapi would decode it as."""
    from pysnmp.proto import rfc1902, rfc1905

    kinds = (
        rfc1902.Integer,
        rfc1902.OctetString,
        rfc1902.ObjectIdentifier,
        rfc1902.Null,
        rfc1902.IpAddress,
        rfc1902.Counter32,
        rfc1902.Gauge32,
        rfc1902.TimeTicks,
        rfc1902.Opaque,
        rfc1902.Counter64,
        rfc1905.NoSuchObject,
        rfc1905.NoSuchInstance,
        rfc1905.EndOfMibView,
    )
    out: dict[int, Any] = {}
    for kind in kinds:
        tag = kind.tagSet[-1]
        out[tag.tagClass | tag.tagFormat | tag.tagId] = kind()
    out[0x24] = rfc1902.OctetString()  # BER lets a string be sent in constructed form
    return out


def plain(tag: int, content: bytes, tlv: bytes) -> Plain:
    """A value (its tag, content and whole TLV) as plain_value gives it."""
    limits = _INT_RANGES.get(tag)
    if limits is not None:
        if len(content) > 9:
            raise MalformedReply("integer too long")
        n = int.from_bytes(content, "big", signed=True)
        if not limits[0] <= n <= limits[1]:
            raise MalformedReply(f"integer {n} out of range for tag 0x{tag:02x}")
        return str(n), n, False
    if tag == _OCTETS:
        return octets_value(content)
    name = _EXCEPTIONS.get(tag)
    if name is not None:
        if content:
            raise MalformedReply(f"{name} with content")
        return name, None, True
    return plain_value(decode_value(tag, tlv))


def decode_value(tag: int, tlv: bytes) -> Any:
    """A value's TLV decoded by pyasn1 as the pysnmp type the hlapi would give."""
    from pyasn1.codec.ber import decoder
    from pyasn1.error import PyAsn1Error

    spec = _value_types().get(tag)
    if spec is None:
        raise MalformedReply(f"unknown value tag 0x{tag:02x}")
    try:
        value, rest = decoder.decode(tlv, asn1Spec=spec)
    except PyAsn1Error as exc:  # e.g. an Integer32 out of range, a 5-byte IpAddress
        raise MalformedReply(f"bad {type(spec).__name__} value: {exc}") from None
    if rest:
        raise MalformedReply("trailing bytes in a value")
    return value
