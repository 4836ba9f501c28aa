"""The SIP parser against RFC 4475's torture messages and hypothesis-generated garbage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.sip.message import (
    SipMessage,
    SipParseError,
    build_request,
    build_response,
    params,
    parse,
    parse_via,
    split_comma,
)

DATA = Path(__file__).parent.parent / "data" / "rfc4475"
FILES = sorted(DATA.glob("*.dat"))

# RFC 4475 §3.1.1 "valid" messages (and app-layer ones) must parse.
MUST_PARSE = {
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason", "badbranch", "insuf",
    "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01", "multi01", "bcast",
    "zeromf", "cparam01", "cparam02", "regescrt", "sdp01", "inv2543",
}  # fmt: skip
# §3.1.2 invalid messages this parser rejects at the message level.
MUST_REJECT = {
    "clerr", "ncl", "ltgtruri", "lwsruri", "lwsstart", "trws", "badvers", "bigcode", "mcl01",
}  # fmt: skip


def _sha256sums() -> dict[str, str]:
    out = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.partition("  ")
        out[name.strip().lstrip("*")] = digest
    return out


def test_the_torture_files_are_intact_with_crlf() -> None:
    """Guard against LF-normalised copies (they change every body length)."""
    sums = _sha256sums()
    assert len(FILES) == 50
    for path in FILES:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[path.name], path.name


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_torture_message_parses_or_is_rejected_cleanly(path: Path) -> None:
    data = path.read_bytes()
    try:
        msg = parse(data)
    except SipParseError:
        assert path.stem not in MUST_PARSE, f"{path.stem} is valid per RFC 4475"
        return
    assert path.stem not in MUST_REJECT, f"{path.stem} must be rejected"
    # Header-level accessors raise only the parser's error too.
    for _, value in msg.headers:
        params(value)
        split_comma(value)
    try:
        msg.cseq()
    except SipParseError:
        pass
    for via in msg.header_values("via"):
        try:
            parse_via(via)
        except SipParseError:
            pass


def test_wsinv_folding_compact_forms_and_body() -> None:
    """§3.1.1.1: folded lines, compact forms, odd case, CL counts the CRLF body exactly."""
    msg = parse((DATA / "wsinv.dat").read_bytes())
    assert msg.method == "INVITE"
    assert msg.header("Call-ID") == msg.header("i") == "wsinv.ndaksdj@192.0.2.1"
    assert msg.header("MAX-FORWARDS") == "0068"
    assert params(msg.header("t") or "")["tag"] == "1918181833n"
    assert params(msg.header("from") or "")["tag"] == "98asjd8"
    assert msg.cseq() == (9, "INVITE")  # leading zeros and a folded method
    vias = [parse_via(v) for v in msg.header_values("via")]
    assert [(t, host) for t, host, _ in vias] == [
        ("UDP", "192.0.2.2"),
        ("TCP", "spindle.example.com"),
        ("UDP", "192.168.255.111"),
    ]
    assert vias[2][2]["branch"] == "z9hG4bK30239"  # value folded onto the next line
    assert msg.top_via_branch() == "390skdjuw"
    assert msg.header("subject") == ""
    assert msg.header("newfangledheader") == "newfangled value continued newfangled value"
    assert len(msg.body) == 150


def test_dblreq_ignores_the_trailing_second_request() -> None:
    msg = parse((DATA / "dblreq.dat").read_bytes())
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_responses_unreason_and_noreason() -> None:
    unreason = parse((DATA / "unreason.dat").read_bytes())
    assert unreason.status == 200 and unreason.reason
    noreason = parse((DATA / "noreason.dat").read_bytes())
    assert noreason.status == 100 and noreason.reason == ""


def test_overlarge_scalars_are_rejected_when_read() -> None:
    """§3.1.2.4/5: the CSeq number is beyond 2**31."""
    for name in ("scalar02", "scalarlg"):
        with pytest.raises(SipParseError):
            parse((DATA / f"{name}.dat").read_bytes()).cseq()


def test_stream_transport_requires_content_length() -> None:
    data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n"
    assert parse(data).status == 200
    with pytest.raises(SipParseError):
        parse(data, datagram=False)


def test_build_and_parse_round_trip_with_received_and_rport() -> None:
    data = build_request(
        "OPTIONS",
        "sip:pbx.example.com",
        via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKabc;rport",
        from_="<sip:nocd@example.com>;tag=1",
        to="<sip:pbx.example.com>",
        call_id="c1@example.com",
        cseq=7,
    )
    req = parse(data)
    assert (req.method, req.uri, req.cseq()) == ("OPTIONS", "sip:pbx.example.com", (7, "OPTIONS"))
    resp = parse(build_response(req, 200, "OK", to_tag="t9", received=("198.51.100.7", 40000)))
    via = resp.header("via") or ""
    assert parse_via(via) == (
        "UDP",
        "192.0.2.10:5070",
        {"branch": "z9hG4bKabc", "rport": "40000", "received": "198.51.100.7"},
    )
    assert params(resp.header("to") or "")["tag"] == "t9"
    assert resp.top_via_branch() == "z9hG4bKabc"


def test_comma_lists_respect_quotes_and_brackets() -> None:
    assert split_comma('"a, b" <sip:x@h;p=1,2>, <sip:y@h>') == [
        '"a, b" <sip:x@h;p=1,2>',
        "<sip:y@h>",
    ]


def test_garbage_is_rejected_with_the_parsers_error() -> None:
    for data in (b"", b"\r\n\r\n", b"hello", b"SIP/2.0 abc OK\r\n\r\n", b"X" * 70000,
                 b"OPTIONS sip:x SIP/2.0\r\nno colon here\r\n\r\n",
                 b"SIP/2.0 200 OK\r\nContent-Length: 5\r\nl: 6\r\n\r\nhello!"):  # fmt: skip
        with pytest.raises(SipParseError):
            parse(data)


def _exercise(msg: SipMessage) -> None:
    for _, value in msg.headers:
        params(value)
        split_comma(value)
    msg.top_via_branch()
    try:
        msg.cseq()
    except SipParseError:
        pass


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        _exercise(parse(data))
    except SipParseError:
        pass


_HEADER_NAMES = st.sampled_from(
    ["Via", "v", "To", "t", "From", "f", "Call-ID", "i", "CSeq", "Content-Length", "l",
     "Contact", "m", "WWW-Authenticate", "X-Odd", "via ", "cOnTeNt-LeNgTh"]
)  # fmt: skip
_VALUE = st.text(
    alphabet=st.characters(codec="utf-8"), max_size=80
) | st.sampled_from(
    ["SIP/2.0/UDP h;branch=z9hG4bK1;rport", "1 OPTIONS", "0", "-1", "99999999999",
     '"q\\"x" <sip:a@b>;tag=1', "Digest realm=\"r\", nonce=\"n", ",,,;;;==="]
)  # fmt: skip


@st.composite
def _sip_like(draw: st.DrawFn) -> bytes:
    start = draw(
        st.sampled_from(["SIP/2.0 200 OK", "SIP/2.0 503 ", "OPTIONS sip:a@b SIP/2.0",
                         "REGISTER sips:x SIP/2.0", "SIP/2.0 99 x", "INVITE  sip:a SIP/2.0"])
    )  # fmt: skip
    lines = [start]
    for _ in range(draw(st.integers(0, 12))):
        sep = draw(st.sampled_from([": ", ":", " : ", "\t:", "", ":\r\n "]))
        lines.append(f"{draw(_HEADER_NAMES)}{sep}{draw(_VALUE)}")
    eol = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    body = draw(st.binary(max_size=64))
    return (eol.join(lines) + eol + eol).encode("utf-8", "surrogatepass") + body


@settings(max_examples=6000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sip_like())
def test_sip_like_messages_never_raise_anything_else(data: bytes) -> None:
    try:
        _exercise(parse(data))
    except SipParseError:
        pass


def test_via_of_only_commas_has_no_branch() -> None:
    # Found by hypothesis: a Via header of nothing but commas once raised IndexError.
    from checks.sip.message import parse as parse_message

    msg = parse_message(
        b"SIP/2.0 200 OK\r\nVia: ,\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert msg.top_via_branch() is None
