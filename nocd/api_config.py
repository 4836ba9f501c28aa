"""Config of API tokens: hashed or from secrets, with scopes."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nocd.inventory import Strict
from nocd.secrets import Secret


class ApiToken(Strict):
    """One bearer token: given as a secret reference or as its SHA-256 hex digest."""

    name: str
    token: Secret | None = None
    token_sha256: str | None = None
    scopes: frozenset[Literal["read", "write"]] = frozenset({"read"})

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("token_sha256 must be 64 lowercase hex digits")
        return v

    @model_validator(mode="after")
    def _one(self) -> ApiToken:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token (secret reference) or token_sha256")
        return self


class ApiConfig(Strict):
    """The JSON API's tokens."""

    tokens: tuple[ApiToken, ...] = Field(default=())
