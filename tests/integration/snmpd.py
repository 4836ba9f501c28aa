"""Run net-snmp's snmpd on 127.0.0.1 for tests: own config, v2c community and v3 users."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.peers import free_port, require_binary

COMMUNITY = "nocd-test-community"
V3_USER = "nocdpriv"
V3_AUTH_USER = "nocdauth"
V3_NOAUTH_USER = "nocdnoauth"
AUTH_KEY = "auth-pass-0123"
PRIV_KEY = "priv-pass-4567"

# Fixed test values served by the agent (override directives), for threshold tests.
TEMPERATURE_OID = "1.3.6.1.4.1.8072.9999.1.0"  # integer 42
ENDPOINTS_OID = "1.3.6.1.4.1.8072.9999.2.0"  # unsigned 73
STATUS_TEXT_OID = "1.3.6.1.4.1.8072.9999.3.0"  # "running"
IF_OPER_STATUS_1 = "1.3.6.1.2.1.2.2.1.8.1"  # lo: up(1)

# No MIB files: snmpd and the net-snmp tools only need numeric OIDs, and loading the
# partial Debian MIB set prints hundreds of warnings.
QUIET_ENV = {"MIBS": "", "MIBDIRS": "/nonexistent"}


class Snmpd:
    """One snmpd process with a config and persistent dir in `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = require_binary("snmpd")
        self.workdir = workdir
        self.port = port or free_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "persist").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "snmpd.conf"
        # A fixed engine ID, as real devices keep theirs across reboots (tests change it).
        self.engine_id = "nocd-test-agent"

    def _write_conf(self) -> None:
        self.conf.write_text(
            f"""agentaddress udp:127.0.0.1:{self.port}
rocommunity {COMMUNITY} 127.0.0.1
createUser {V3_USER} SHA "{AUTH_KEY}" AES "{PRIV_KEY}"
rouser {V3_USER} priv
createUser {V3_AUTH_USER} SHA "{AUTH_KEY}"
rouser {V3_AUTH_USER} auth
createUser {V3_NOAUTH_USER}
rouser {V3_NOAUTH_USER} noauth
sysLocation nocd test lab
sysContact noc@example.com
override .{TEMPERATURE_OID} integer 42
override .{ENDPOINTS_OID} unsigned 73
override .{STATUS_TEXT_OID} octet_str "running"
dontLogTCPWrappersConnects yes
engineID {self.engine_id}
"""
        )

    @property
    def address(self) -> str:
        """host:port of the agent."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start snmpd in the foreground and wait until it serves."""
        self._write_conf()
        log = self.workdir / "snmpd.log"
        env = {**os.environ, **QUIET_ENV, "SNMP_PERSISTENT_DIR": str(self.workdir / "persist")}
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-Lf", str(log), "-C", "-c", str(self.conf), "-I", "-smux"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd exited: {log.read_text(errors='replace')[-2000:]}")
            if log.exists() and "NET-SNMP version" in log.read_text(errors="replace"):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("snmpd did not start within 10s")

    def stop(self) -> None:
        """Stop snmpd (TERM, then KILL) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        (self.workdir / "snmpd.log").unlink(missing_ok=True)
