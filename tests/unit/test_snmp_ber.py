"""snmp_ber: templates patch only the request-id; replies parse as pysnmp/pyasn1 decode them."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v2c

from checks.snmp_ber import (
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    MalformedReply,
    parse,
    peek,
    plain,
    template,
)
from checks.snmp_common import plain_value

COMMUNITY = b"c0mmunity-example"
OIDS = ("1.3.6.1.4.1.8072.9999.1.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.2.2.1.8.1")


def response(
    request_id: int,
    values: list[Any],
    *,
    oids: tuple[str, ...] = OIDS,
    community: bytes = COMMUNITY,
    status: int = 0,
    index: int = 0,
) -> bytes:
    """A Response-PDU encoded by pysnmp, as an agent would send it."""
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_error_status(pdu, status)
    v2c.apiPDU.set_error_index(pdu, index)
    v2c.apiPDU.set_varbinds(pdu, list(zip(oids, values, strict=True)))
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@given(st.integers(REQUEST_ID_MIN, REQUEST_ID_MAX))
def test_template_patches_only_the_request_id(request_id: int) -> None:
    tpl = template(COMMUNITY, OIDS)
    packet = tpl.with_request_id(request_id)
    msg, rest = decoder.decode(packet, asn1Spec=v2c.Message())
    assert rest == b""
    pdu = v2c.apiMessage.get_pdu(msg)
    assert int(v2c.apiPDU.get_request_id(pdu)) == request_id
    assert bytes(v2c.apiMessage.get_community(msg)) == COMMUNITY
    assert [str(o) for o, _ in v2c.apiPDU.get_varbinds(pdu)] == list(OIDS)


def test_reply_parses_like_pysnmp() -> None:
    tpl = template(COMMUNITY, OIDS)
    data = response(
        0x1234_5678, [rfc1902.Integer(42), rfc1902.TimeTicks(123456), rfc1905.noSuchInstance]
    )
    request_id, community, pos, problem = peek(data)
    assert (request_id, community, problem) == (0x1234_5678, COMMUNITY, "")
    reply = parse(data, pos, tpl)
    assert (reply.status, reply.index) == (0, 0)
    assert reply.varbinds == [
        (OIDS[0], ("42", 42, False)),
        (OIDS[1], ("123456", 123456, False)),
        (OIDS[2], ("NoSuchInstance", None, True)),
    ]


def test_error_status_and_unrequested_oid() -> None:
    tpl = template(COMMUNITY, OIDS[:1])
    data = response(REQUEST_ID_MIN, [rfc1902.Integer(1)], oids=("1.3.6.1.9.9",), status=2, index=1)
    reply = parse(data, peek(data)[2], tpl)
    assert (reply.status, reply.index, reply.status_name) == (2, 1, "noSuchName")
    assert reply.varbinds == [("1.3.6.1.9.9", ("1", 1, False))]


VALUES = st.one_of(
    st.integers(-(1 << 31), (1 << 31) - 1).map(rfc1902.Integer),
    st.integers(0, (1 << 32) - 1).map(rfc1902.Counter32),
    st.integers(0, (1 << 32) - 1).map(rfc1902.Gauge32),
    st.integers(0, (1 << 32) - 1).map(rfc1902.TimeTicks),
    st.integers(0, (1 << 64) - 1).map(rfc1902.Counter64),
    st.binary(max_size=40).map(rfc1902.OctetString),
    st.text(max_size=20).map(lambda t: rfc1902.OctetString(t.encode())),
    st.sampled_from(["12", "-3.5", "nan", "1e999", "running"]).map(
        lambda t: rfc1902.OctetString(t.encode())
    ),
    st.binary(min_size=4, max_size=4).map(rfc1902.IpAddress),
    st.lists(st.integers(0, 1 << 40), min_size=0, max_size=8).map(
        lambda xs: rfc1902.ObjectIdentifier((1, 3, *xs))
    ),
    st.binary(max_size=10).map(rfc1902.Opaque),
    st.sampled_from([rfc1905.noSuchObject, rfc1905.noSuchInstance, rfc1905.endOfMibView]),
    st.just(rfc1902.Null("")),
)


@settings(max_examples=300)
@given(VALUES)
def test_values_read_directly_match_pyasn1(value: Any) -> None:
    # The direct reads of common kinds must give exactly what pyasn1 + plain_value give.
    tlv = bytes(encoder.encode(value))
    decoded, _ = decoder.decode(tlv, asn1Spec=type(value)())
    content_at = 2 if tlv[1] < 0x80 else 2 + (tlv[1] & 0x7F)
    assert plain(tlv[0], tlv[content_at:], tlv) == plain_value(decoded)


@pytest.mark.parametrize(
    ("tlv", "why"),
    [
        (b"\x02\x05\x01\x00\x00\x00\x00", "out of range"),  # Integer32 above 2**31 - 1
        (b"\x41\x01\xff", "out of range"),  # a negative Counter32
        (b"\x80\x01\x00", "with content"),
        (b"\x47\x00", "unknown value tag"),
        (b"\x40\x05\x01\x02\x03\x04\x05", "IpAddress"),  # pyasn1 enforces 4 octets
    ],
)
def test_bad_values_are_malformed(tlv: bytes, why: str) -> None:
    with pytest.raises(MalformedReply, match=why):
        plain(tlv[0], tlv[2:], tlv)


def _parse(data: bytes) -> None:
    _, _, pos, problem = peek(data)
    if problem:
        raise MalformedReply(problem)
    parse(data, pos, template(COMMUNITY, OIDS))


def test_every_truncation_is_malformed() -> None:
    data = response(REQUEST_ID_MIN, [rfc1902.Integer(7), rfc1902.OctetString(b"ok"), v2c.null])
    for cut in range(len(data)):
        with pytest.raises(MalformedReply):
            _parse(data[:cut])
    with pytest.raises(MalformedReply, match="trailing"):
        _parse(data + b"\x00")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (b"\x30\x80\x00\x00", "length form"),  # indefinite length
        (b"\x30\x03\x02\x01\x00", "not v2c"),  # SNMPv1
        (b"\x1f\x00", "tag 0x1f"),
        (template(COMMUNITY, OIDS).with_request_id(REQUEST_ID_MIN), "tag 0xa0"),  # a request
    ],
)
def test_not_a_v2c_response(data: bytes, why: str) -> None:
    with pytest.raises(MalformedReply, match=why):
        _parse(data)


@functools.cache
def _good_reply() -> bytes:
    return response(
        REQUEST_ID_MIN, [rfc1902.Counter64(1 << 40), rfc1902.IpAddress("192.0.2.1"), v2c.null]
    )


@settings(max_examples=400)
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_replies_raise_only_malformed(changes: list[tuple[int, int]]) -> None:
    data = bytearray(_good_reply())
    for at, byte in changes:
        data[at % len(data)] = byte
    try:
        _parse(bytes(data))
    except MalformedReply:
        pass
