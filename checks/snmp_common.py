"""What SNMP polling and the trap receiver share: OIDs, v3 credentials, value and error mapping."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import model_validator

from nocd.inventory import Strict
from nocd.model import FailureClass
from nocd.secrets import Secret

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
_OID = re.compile(r"^\.?[0-2](\.\d+)+$")

AuthProtocol = Literal["none", "md5", "sha", "sha224", "sha256", "sha384", "sha512"]
PrivProtocol = Literal["none", "des", "3des", "aes", "aes192", "aes256"]


def check_oid(v: str) -> str:
    """Validate a numeric OID (`1.3.6.1.2.1.1.3.0`), dropping a leading dot."""
    if not _OID.match(v):
        raise ValueError(f"{v!r} is not a numeric OID like 1.3.6.1.2.1.1.3.0")
    return v.lstrip(".")


def split_target(target: str, default_port: int) -> tuple[str, int]:
    """Split `host`, `host:port` or `[v6]:port` into host and port."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port_text = rest.removeprefix(":") or str(default_port)
    elif target.count(":") == 1:
        host, _, port_text = target.partition(":")
    else:
        host, port_text = target, str(default_port)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("target must be host or host:port (e.g. ups1.example.com:161)")
    return host, int(port_text)


class V3Credentials(Strict):
    """An SNMPv3 USM user: name, auth/priv protocols and keys (keys are secrets)."""

    user: str
    auth_protocol: AuthProtocol = "sha"
    auth_key: Secret | None = None
    priv_protocol: PrivProtocol = "aes"
    priv_key: Secret | None = None
    context: str = ""

    @model_validator(mode="after")
    def _keys(self) -> V3Credentials:
        if self.auth_protocol != "none" and self.auth_key is None:
            raise ValueError("auth_key is required unless auth_protocol is none")
        if self.priv_protocol != "none":
            if self.auth_protocol == "none":
                raise ValueError("privacy needs authentication (SNMPv3 has no noAuthPriv)")
            if self.priv_key is None:
                raise ValueError("priv_key is required unless priv_protocol is none")
        for key in (self.auth_key, self.priv_key):
            if key is not None and len(key.get_secret_value()) < 8:
                raise ValueError("SNMPv3 pass phrases must be at least 8 characters")
        return self

    @property
    def level(self) -> str:
        """authPriv, authNoPriv or noAuthNoPriv."""
        if self.auth_protocol == "none":
            return "noAuthNoPriv"
        return "authNoPriv" if self.priv_protocol == "none" else "authPriv"

    def identity(self) -> tuple[str, ...]:
        """Everything that distinguishes this credential set (kept in memory only)."""
        return (
            self.user,
            self.auth_protocol,
            self.auth_key.get_secret_value() if self.auth_key else "",
            self.priv_protocol,
            self.priv_key.get_secret_value() if self.priv_key else "",
        )

    def protocols(self) -> tuple[Any, Any]:
        """pysnmp's auth and priv protocol identifiers."""
        from pysnmp.hlapi.v3arch.asyncio import auth

        auths = {
            "none": auth.USM_AUTH_NONE,
            "md5": auth.USM_AUTH_HMAC96_MD5,
            "sha": auth.USM_AUTH_HMAC96_SHA,
            "sha224": auth.USM_AUTH_HMAC128_SHA224,
            "sha256": auth.USM_AUTH_HMAC192_SHA256,
            "sha384": auth.USM_AUTH_HMAC256_SHA384,
            "sha512": auth.USM_AUTH_HMAC384_SHA512,
        }
        privs = {
            "none": auth.USM_PRIV_NONE,
            "des": auth.USM_PRIV_CBC56_DES,
            "3des": auth.USM_PRIV_CBC168_3DES,
            "aes": auth.USM_PRIV_CFB128_AES,
            "aes192": auth.USM_PRIV_CFB192_AES,
            "aes256": auth.USM_PRIV_CFB256_AES,
        }
        return auths[self.auth_protocol], privs[self.priv_protocol]

    def usm_user_data(self) -> Any:
        """The pysnmp UsmUserData for a command generator."""
        from pysnmp.hlapi.v3arch.asyncio import UsmUserData

        auth_proto, priv_proto = self.protocols()
        return UsmUserData(
            self.user,
            authKey=self.auth_key.get_secret_value() if self.auth_key else None,
            privKey=self.priv_key.get_secret_value() if self.priv_key else None,
            authProtocol=auth_proto,
            privProtocol=priv_proto,
        )


def plain_value(val: Any) -> tuple[str, int | float | None, bool]:
    """A varbind value as (text, number or None, absent?) without MIB lookups."""
    from pyasn1.type import univ  # type: ignore[import-untyped]
    from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

    if isinstance(val, NoSuchObject | NoSuchInstance | EndOfMibView):
        return type(val).__name__, None, True
    if isinstance(val, univ.Integer):
        return str(int(val)), int(val), False
    if isinstance(val, univ.OctetString) and not _is_ip(val):
        return octets_value(bytes(val))
    text = val.prettyPrint()
    return text, None, False


def octets_value(raw: bytes) -> tuple[str, int | float | None, bool]:
    """An OCTET STRING value as plain_value gives it: text if printable, else hex."""
    text = raw.decode("utf-8", "replace") if _printable(raw) else "0x" + raw.hex()
    return text, _number(text), False


def _is_ip(val: Any) -> bool:
    from pysnmp.proto.rfc1902 import IpAddress

    return isinstance(val, IpAddress)


def _printable(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _number(text: str) -> int | float | None:
    # Some agents report gauges as strings ("42.5"); such values are numbers to judge and graph.
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


_AUTH_ERRORS = (
    "WrongDigest",
    "UnknownUserName",
    "UnknownSecurityName",
    "AuthenticationFailure",
    "AuthenticationError",
    "UnsupportedSecurityLevel",
    "DecryptionError",
    "UnknownCommunityName",
)


def error_class(err: Any) -> FailureClass:
    """Map a pysnmp error indication onto the closed failure classes."""
    name = type(err).__name__
    if name == "RequestTimedOut":
        return FailureClass.TIMEOUT
    if name in _AUTH_ERRORS:
        return FailureClass.AUTH
    if name in ("EncryptionError", "NoEncryption"):
        return FailureClass.INTERNAL
    return FailureClass.PROTOCOL
