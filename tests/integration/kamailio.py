"""Run a real Kamailio for the SIP tests: registrar with digest users, TLS, JSON-RPC over HTTP.

Everything (config, TLS certificates, runtime dir) goes into a temporary directory and
Kamailio listens only on 127.0.0.1 ephemeral ports; the process is killed at teardown.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.peers import free_port, require_binary, stop_process

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

# Test accounts: user → (password, qop flag for auth_challenge: "1" qop=auth, "0" none).
# The digest algorithm (MD5 or SHA-256) is global in Kamailio 5.6: one per instance.
USERS = {
    "alice": ("alice-secret-1", "1"),
    "bob": ("bob-secret-2", "0"),  # no qop (RFC 2069 compatibility)
    "phone101": ("phone101-pw", "1"),
    "phone102": ("phone102-pw", "1"),
}
RPC_USER, RPC_PASSWORD = "nocd", "rpc-secret-5"


@dataclass
class Certs:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """Generate a CA and a server certificate (SAN localhost, 127.0.0.1) into `directory`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nocd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out


def _config(k: Kamailio) -> str:
    users = "\n".join(
        f'    if ($fU == "{u}") {{ $var(pw) = "{pw}"; $var(qop) = {q}; }}'
        for u, (pw, q) in USERS.items()
    )
    basic = base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()
    return f"""#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
tcp_children=2
auto_aliases=no
listen=udp:127.0.0.1:{k.udp_port}
listen=tcp:127.0.0.1:{k.tcp_port}
listen=tls:127.0.0.1:{k.tls_port}
listen=tcp:127.0.0.1:{k.http_port}
enable_tls=yes
tcp_accept_no_cl=yes
alias="localhost"

mpath="{MODULES}/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "htable.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "tls.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"

modparam("tls", "config", "{k.dir}/tls.cfg")
modparam("usrloc", "db_mode", 0)
modparam("auth", "algorithm", "{k.algorithm}")
modparam("registrar", "max_expires", 3600)
modparam("htable", "htable", "state=>size=4;")
modparam("jsonrpcs", "transport", 1)
modparam("jsonrpcs", "pretty_format", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if ($sht(state=>maintenance) == 1) {{
        sl_send_reply("503", "Maintenance");
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    if (is_method("REGISTER")) {{
        route(AUTH);
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    sl_send_reply("404", "Not Here");
}}

route[AUTH] {{
    $var(pw) = "";
    $var(qop) = 1;
{users}
    if ($var(pw) == "") {{
        sl_send_reply("403", "Unknown User");
        exit;
    }}
    if (!pv_auth_check("$fd", "$var(pw)", "0", "1")) {{
        auth_challenge("$fd", "$var(qop)");
        exit;
    }}
    consume_credentials();
}}

event_route[xhttp:request] {{
    if ($hdr(Authorization) != "Basic {basic}") {{
        append_to_reply("WWW-Authenticate: Basic realm=\\"kamailio\\"\\r\\n");
        xhttp_reply("401", "Unauthorized", "text/plain", "auth required");
        exit;
    }}
    if ($hu =~ "^/RPC") {{
        jsonrpc_dispatch();
        exit;
    }}
    xhttp_reply("404", "Not Found", "text/plain", "not found");
}}
"""


@dataclass
class Kamailio:
    """A Kamailio process configured for the tests."""

    dir: Path
    udp_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    tcp_port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    algorithm: str = "MD5"
    certs: Certs | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        """The JSON-RPC endpoint served by xhttp."""
        return f"http://127.0.0.1:{self.http_port}/RPC"

    def start(self) -> None:
        """Write the config and certificates, start Kamailio and wait until it answers."""
        binary = require_binary("kamailio")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.certs = make_certs(self.dir)
        (self.dir / "tls.cfg").write_text(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            f"require_certificate = no\nprivate_key = {self.certs.key}\n"
            f"certificate = {self.certs.cert}\n"
        )
        cfg = self.dir / "kamailio.cfg"
        cfg.write_text(_config(self))
        run = self.dir / "run"
        run.mkdir(exist_ok=True)
        check = subprocess.run(
            [binary, "-c", "-f", str(cfg)], capture_output=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"kamailio config check failed: {check.stderr.decode()[-2000:]}")
        self.log = (self.dir / "kamailio.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-f", str(cfg), "-DD", "-E", "-Y", str(run), "-m", "64", "-M", "8"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited: {self.tail()}")
            try:
                self.rpc("core.version")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"kamailio did not come up: {self.tail()}")

    def tail(self) -> str:
        """The end of Kamailio's log, for failure messages."""
        path = self.dir / "kamailio.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def rpc(self, method: str, *params: object) -> object:
        """Call a Kamailio RPC command over JSON-RPC/HTTP (blocking; test setup only)."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
        req = urllib.request.Request(
            self.rpc_url,
            data=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic "
                + base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode(),
            },
        )
        with urllib.request.urlopen(req, timeout=2) as resp:
            data = json.loads(resp.read())
        if "error" in data:
            raise RuntimeError(f"kamailio rpc {method}: {data['error']}")
        return data.get("result")

    def set_maintenance(self, on: bool) -> None:
        """Make every SIP request get 503 (on) or normal service (off)."""
        self.rpc("htable.seti", "state", "maintenance", 1 if on else 0)

    def stop(self) -> None:
        """Terminate Kamailio (kill if it lingers) and close its log."""
        stop_process(self.proc)
        if hasattr(self, "log"):
            self.log.close()
