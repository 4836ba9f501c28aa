"""A dependency-free sd_notify(3) client: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd expects in MONOTONIC_USEC=."""
    # time.monotonic() is CLOCK_MONOTONIC on Linux too, but name the clock explicitly:
    # systemd compares this value against its own CLOCK_MONOTONIC reading.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str) -> str | bytes | None:
    """The AF_UNIX address for a $NOTIFY_SOCKET value, or None if unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # Abstract namespace: a leading NUL byte instead of '@', no trailing NUL.
        return b"\0" + value[1:].encode()
    # Relative paths are invalid per sd_notify(3); vsock: addresses (systemd 254+) are
    # not used on the systemd 252 hosts nocd targets. Treat both as "not under systemd".
    return None


def _one_line(text: str) -> str:
    """`text` without newlines, so a status can never inject another assignment."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends sd_notify messages to $NOTIFY_SOCKET; every method is a no-op when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID from `environ` (default os.environ)."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw) if raw else None
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; True if it was sent, never raises."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                # Non-blocking: a stuck or slow manager must never stall the event loop;
                # a dropped datagram just means the next ping or state change retries.
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
                )
            sent = self._sock.sendto(payload, self._address)
        except OSError:
            return False
        return sent == len(payload)

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd startup (or a reload) finished; optionally with a status line."""
        lines = ["READY=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """Set the free-form status line shown by `systemctl status`."""
        return self.notify("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        """Ping the service watchdog (WatchdogSec=); call only while the daemon is healthy."""
        return self.notify("WATCHDOG=1")

    def reloading(self, monotonic_usec: int) -> bool:
        """Announce a reload started at `monotonic_usec` (CLOCK_MONOTONIC); send ready() after."""
        # systemd 252 ignores MONOTONIC_USEC= but 253+ requires it with RELOADING=1 to
        # tell this reload apart from an earlier one; sending it costs nothing.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={int(monotonic_usec)}")

    def stopping(self) -> bool:
        """Announce a clean shutdown has begun (so systemd shows 'deactivating')."""
        return self.notify("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds if it applies to this process, else None.

        Ping at no more than half this interval, as sd_watchdog_enabled(3) advises.
        """
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            # WATCHDOG_PID names the process systemd expects pings from; a child that
            # inherited the environment must not believe the watchdog is its job.
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 1_000_000

    def close(self) -> None:
        """Close the socket; later calls reopen it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
