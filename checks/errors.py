"""Map Python/network exceptions onto the closed FailureClass enum."""

from __future__ import annotations

import errno
import socket
import ssl

from nocd.model import FailureClass

_ERRNO = {
    errno.ECONNREFUSED: FailureClass.REFUSED,
    errno.ECONNRESET: FailureClass.REFUSED,
    errno.EHOSTUNREACH: FailureClass.UNREACHABLE,
    errno.ENETUNREACH: FailureClass.UNREACHABLE,
    errno.EHOSTDOWN: FailureClass.UNREACHABLE,
    errno.ETIMEDOUT: FailureClass.TIMEOUT,
}


def classify_exception(exc: BaseException) -> tuple[FailureClass, str]:
    """Return the failure class and a short human detail for an exception."""
    if isinstance(exc, TimeoutError):
        return FailureClass.TIMEOUT, "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FailureClass.TLS, f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return FailureClass.TLS, f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return FailureClass.DNS, f"name resolution failed: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno], exc.strerror or str(exc)
    if isinstance(exc, ConnectionError):
        return FailureClass.REFUSED, str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return FailureClass.UNREACHABLE, exc.strerror or str(exc)
    return FailureClass.INTERNAL, f"{type(exc).__name__}: {exc}"
