"""Digest auth against the published vectors of RFC 2617 and RFC 7616 (SHA-256, RFC 8760)."""

from __future__ import annotations

import pytest

from checks.sip.digest import (
    Challenge,
    ChallengeError,
    best_challenge,
    digest_response,
    parse_challenge,
)
from checks.sip.message import parse


def _field(header: str, name: str) -> str:
    for part in header.removeprefix("Digest ").split(", "):
        key, _, value = part.partition("=")
        if key == name:
            return value.strip('"')
    raise KeyError(name)


def test_rfc2617_md5_qop_auth_vector() -> None:
    """RFC 2617 §3.5: the Mufasa example."""
    ch = Challenge("testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "MD5", ("auth",))
    _, value = digest_response(
        ch, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b"
    )
    assert _field(value, "response") == "6629fae49393a05397450978507c4ef1"
    assert _field(value, "nc") == "00000001"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    """RFC 7616 §3.9.1: the same exchange with MD5 and SHA-256."""
    ch = Challenge(
        "http-auth@example.org",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm,
        ("auth",),
        "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    )
    name, value = digest_response(
        ch,
        "Mufasa",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        1,
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert name == "Authorization"
    assert _field(value, "response") == expected
    assert _field(value, "opaque") == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_no_qop_uses_the_rfc2069_form() -> None:
    ch = Challenge("r", "n", "MD5")
    _, value = digest_response(ch, "u", "p", "REGISTER", "sip:example.com")
    assert "qop" not in value and "cnonce" not in value
    # H(H(u:r:p):n:H(REGISTER:sip:example.com)) computed independently:
    import hashlib

    def h(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    assert _field(value, "response") == h(f"{h('u:r:p')}:n:{h('REGISTER:sip:example.com')}")


def test_parse_challenge_quoting_and_case() -> None:
    ch = parse_challenge(
        'Digest realm="example.com", nonce="a\\"b", QOP="auth,auth-int", '
        'algorithm=SHA-256, stale=TRUE, opaque="o"',
        proxy=True,
    )
    assert (ch.realm, ch.nonce, ch.algorithm, ch.qop) == (
        "example.com",
        'a"b',
        "SHA-256",
        ("auth", "auth-int"),
    )
    assert ch.stale and ch.proxy and ch.opaque == "o"
    assert digest_response(ch, "u", "p", "REGISTER", "sip:x")[0] == "Proxy-Authorization"


@pytest.mark.parametrize(
    "value",
    [
        'Basic realm="x"',
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", algorithm=SHA-1',
        'Digest realm="r", nonce="n", qop="auth-int"',
        'Digest realm="r", nonce="n' + "x" * 10000,
    ],
)
def test_unusable_challenges_raise_challenge_error(value: str) -> None:
    with pytest.raises(ChallengeError):
        parse_challenge(value)


def test_best_challenge_prefers_sha256_over_md5() -> None:
    """RFC 8760 §2.4: several challenges, pick the strongest we support."""
    msg = parse(
        b"SIP/2.0 401 Unauthorized\r\n"
        b'WWW-Authenticate: Digest realm="r", nonce="1", algorithm=MD5, qop="auth"\r\n'
        b'WWW-Authenticate: Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth"\r\n'
        b'WWW-Authenticate: Digest realm="r", nonce="3", algorithm=SHA-1\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    assert best_challenge(msg).nonce == "2"
    with pytest.raises(ChallengeError, match="without a www-authenticate"):
        best_challenge(parse(b"SIP/2.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"))
