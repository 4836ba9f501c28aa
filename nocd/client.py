"""A small blocking HTTP client for the CLI's operator commands against a running daemon.

Where to connect: `--url`, else `$NOCD_URL`, else the config file's `daemon.listen`, else
127.0.0.1:9469. The token: `--token`, else `$NOCD_TOKEN`, else the file `$NOCD_TOKEN_FILE`
(relative paths in `$CREDENTIALS_DIRECTORY`, as the daemon reads its own secrets).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from nocd.secrets import SecretError, read_secret_file

DEFAULT_URL = "http://127.0.0.1:9469"


class Unreachable(Exception):
    """The daemon did not answer (refused, timed out, bad URL)."""


class ApiError(Exception):
    """The daemon answered with an error status; `message` is its `error` text."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body


def listen_url(config_path: Path) -> str | None:
    """`http://HOST:PORT` from the config's `daemon.listen`, read without validating secrets."""
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="safe").load(config_path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - unreadable or not YAML: fall back to the default address
        return None
    daemon = data.get("daemon") if isinstance(data, dict) else None
    listen = daemon.get("listen") if isinstance(daemon, dict) else None
    if not isinstance(listen, str) or ":" not in listen:
        return None
    host, _, port = listen.rpartition(":")
    # A wildcard listener is reached on loopback from the same machine.
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"http://{host}:{port}"


def find_url(explicit: str | None, config_path: Path | None) -> str:
    """The daemon's base URL (see the module docstring for the order)."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("NOCD_URL"):
        return os.environ["NOCD_URL"].rstrip("/")
    if config_path is not None and config_path.exists():
        found = listen_url(config_path)
        if found:
            return found
    return DEFAULT_URL


def find_token(explicit: str | None) -> str | None:
    """The bearer token (see the module docstring for the order); SecretError if unreadable."""
    if explicit:
        return explicit
    if os.environ.get("NOCD_TOKEN"):
        return os.environ["NOCD_TOKEN"]
    path = os.environ.get("NOCD_TOKEN_FILE")
    if path:
        return read_secret_file(path)
    return None


class Client:
    """JSON calls to /api/v1 with a bearer token."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def get(self, path: str, **params: str | int | None) -> Any:
        """GET /api/v1{path} with the non-None query parameters."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self._call("GET", path + suffix, None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST a JSON body to /api/v1{path}."""
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        if not self.url.startswith(("http://", "https://")):
            raise Unreachable(f"{self.url} is not an http(s) URL")
        req = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _decode(resp.read(), resp.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read(), exc.headers.get_content_type())
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ApiError(exc.code, str(message or exc.reason), payload) from None
        except OSError as exc:  # URLError, refused, timed out
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach nocd at {self.url}: {reason}") from None


def _decode(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", "replace")
    if content_type == "application/json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


__all__ = ["ApiError", "Client", "SecretError", "Unreachable", "find_token", "find_url"]
