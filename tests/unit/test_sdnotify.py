"""sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nocd.sdnotify import Notifier, monotonic_usec


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket playing the service manager's notify socket."""
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path is 108 bytes; pytest tmp paths can be long
        pytest.skip("tmp_path too long for an AF_UNIX socket path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_watchdog_stopping_arrive_verbatim(
    manager: tuple[socket.socket, str],
) -> None:
    sock, path = manager
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready() is True
    assert _recv(sock) == "READY=1"
    assert n.ready("12 checks scheduled") is True
    assert _recv(sock) == "READY=1\nSTATUS=12 checks scheduled"
    assert n.status("probing 12 checks") is True
    assert _recv(sock) == "STATUS=probing 12 checks"
    assert n.watchdog() is True
    assert _recv(sock) == "WATCHDOG=1"
    assert n.stopping() is True
    assert _recv(sock) == "STOPPING=1"
    n.close()


def test_reloading_carries_monotonic_usec(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.reloading(123456789) is True
    assert _recv(sock) == "RELOADING=1\nMONOTONIC_USEC=123456789"
    before = monotonic_usec()
    assert n.reloading(monotonic_usec()) is True
    lines = _recv(sock).split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= monotonic_usec()
    n.close()


def test_status_newlines_cannot_inject_assignments(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.status("bad config\nREADY=1\r\nERRNO=5") is True
    assert _recv(sock) == "STATUS=bad config READY=1 ERRNO=5"
    n.close()


def test_abstract_socket() -> None:
    name = f"nocd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready() is True
        assert _recv(sock) == "READY=1"
        n.close()
    finally:
        sock.close()


def test_sender_credentials_are_this_process(manager: tuple[socket.socket, str]) -> None:
    # NotifyAccess=main makes systemd drop messages whose SCM_CREDENTIALS pid is not the
    # main pid, so the datagram must come from this very process (no helper subprocess).
    sock, path = manager
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.watchdog() is True
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    assert data == b"WATCHDOG=1"
    creds = [
        d for lvl, typ, d in ancdata if (lvl, typ) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    ]
    assert len(creds) == 1
    pid, _uid, _gid = struct.unpack("iII", creds[0][:12])
    assert pid == os.getpid()
    n.close()


def test_unset_socket_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.reloading(1) is False
    assert n.stopping() is False
    assert n.status("x") is False


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_unsupported_addresses_are_a_no_op(value: str) -> None:
    n = Notifier({"NOTIFY_SOCKET": value})
    assert not n.enabled
    assert n.ready() is False


def test_missing_socket_returns_false_without_raising(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    n.close()


def test_manager_gone_after_start_returns_false(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert n.ready() is True
    sock.close()
    path.unlink()
    assert n.watchdog() is False
    n.close()


def test_full_receiver_queue_never_blocks(manager: tuple[socket.socket, str]) -> None:
    # The receiver never reads: a blocking sender would hang once the queue fills
    # (net.unix.max_dgram_qlen, 10 by default); ours must report False instead.
    _sock, path = manager
    n = Notifier({"NOTIFY_SOCKET": path})
    results = [n.watchdog() for _ in range(5000)]
    assert results[0] is True
    assert results[-1] is False
    n.close()


def test_close_then_send_reopens(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    n = Notifier({"NOTIFY_SOCKET": path})
    n.close()
    n.close()  # idempotent
    assert n.ready() is True
    assert _recv(sock) == "READY=1"
    n.close()


def test_reads_os_environ_by_default(
    manager: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.ready() is True
    assert _recv(sock) == "READY=1"
    n.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "abc"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env).watchdog_interval() == expected
