"""Run a headless baresip as a phone registering to a local registrar over UDP."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.peers import free_port, require_binary, stop_process

MODULES = Path("/usr/lib/baresip/modules")


def _free_sip_port() -> int:
    """A port with UDP and TCP free, and TCP port+1 free too (baresip's TLS listener)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free SIP port pair found")


class Baresip:
    """A baresip process with the given accounts (user → password), no audio at all."""

    def __init__(self, directory: Path, registrar_port: int, accounts: dict[str, str]) -> None:
        self.dir = directory
        self.registrar_port = registrar_port
        self.accounts = accounts
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write config and accounts, start baresip (it registers on its own)."""
        binary = require_binary("baresip")
        self.dir.mkdir(parents=True, exist_ok=True)
        # baresip binds UDP and TCP on the port and TLS on port+1; another process may take
        # one of them between our check and its bind, so retry on "Address already in use".
        for _ in range(5):
            self._start_once(binary, _free_sip_port())
            time.sleep(0.3)
            if self.proc is not None and self.proc.poll() is None:
                return
            if "Address already in use" not in self.tail():
                return  # a different failure: wait_registered reports it
        raise RuntimeError(f"baresip could not bind a SIP port: {self.tail()}")

    def _start_once(self, binary: str, port: int) -> None:
        (self.dir / "config").write_text(
            f"poll_method\tepoll\nsip_listen\t127.0.0.1:{port}\n"
            f"module_path\t{MODULES}\nmodule_app\taccount.so\n"
        )
        (self.dir / "accounts").write_text(
            "".join(
                f"<sip:{user}@127.0.0.1:{self.registrar_port};transport=udp>"
                f";auth_pass={password};regint=60\n"
                for user, password in self.accounts.items()
            )
        )
        if hasattr(self, "log"):
            self.log.close()
        self.log = (self.dir / "baresip.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-4", "-f", str(self.dir)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Block until baresip logged a 200 for every account."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = (self.dir / "baresip.log").read_text(errors="replace")
            if text.count("200 OK") >= len(self.accounts):
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"baresip did not register: {self.tail()}")

    def tail(self) -> str:
        """The end of baresip's output."""
        return (self.dir / "baresip.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM (baresip unregisters on it), then kill if it lingers."""
        stop_process(self.proc)
        if hasattr(self, "log"):
            self.log.close()
