"""Find external peer programs for integration tests: skip when missing, fail in CI.

CI sets NOCD_REQUIRE_PEERS=1 so that a missing peer fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

EXTRA_PATHS = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin")


def peers_required() -> bool:
    """True when missing peers must fail the run (CI)."""
    return os.environ.get("NOCD_REQUIRE_PEERS", "") not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip the test with `reason`, or fail it when peers are required."""
    if peers_required():
        pytest.fail(f"required peer missing (NOCD_REQUIRE_PEERS=1): {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Path of the program `name` (also searched in sbin dirs), or skip/fail the test."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(EXTRA_PATHS))
    if path is None:
        missing(f"{name} is not installed (see .ci/run for the Debian package)")
        raise AssertionError("unreachable")
    return path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM a peer (so it can clean up, e.g. unregister), then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)
