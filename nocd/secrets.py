"""Secrets from the environment or files (systemd credentials), never from YAML in clear."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class SecretError(ValueError):
    """A secret reference that cannot be resolved (names the variable or file, never a value)."""


def resolve_secret(value: Any) -> SecretStr:
    """Resolve `${ENV}` or `file:/path` (also `$CREDENTIALS_DIRECTORY`-relative) into a secret."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, dict) and set(value) == {"file"}:
        value = "file:" + str(value["file"])
    if not isinstance(value, str):
        raise SecretError("a secret must be '${ENV_VAR}' or 'file:/path/to/file'")
    m = _ENV_REF.match(value.strip())
    if m:
        name = m.group(1)
        if name not in os.environ:
            raise SecretError(f"environment variable {name} is not set")
        return SecretStr(os.environ[name])
    if value.startswith("file:"):
        return SecretStr(read_secret_file(value[5:]))
    raise SecretError(
        "secrets may not be written in clear in the config: use '${ENV_VAR}' or 'file:/path'"
    )


def read_secret_file(path_text: str) -> str:
    """Read a secret file; a relative path is looked up in $CREDENTIALS_DIRECTORY (systemd)."""
    path = Path(path_text)
    if not path.is_absolute() and "CREDENTIALS_DIRECTORY" in os.environ:
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretError(f"secret file {path} is not UTF-8 text") from None
    if not value:
        # An empty credential (e.g. a LoadCredential= placeholder) would fail later and vaguely.
        raise SecretError(f"secret file {path} is empty")
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A pydantic field type for secrets: `${ENV}` or `file:/path`, shown as '**********'."""
