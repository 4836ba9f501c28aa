"""The acknowledgement contract between paging's webhooks and the incidents engine.

The lead implements `Acker` over the incidents table; its ack/resolve must be idempotent
(acknowledging an acknowledged incident returns ok with changed=False) and must notify the
pager (`Pager.on_incident(..., ACKNOWLEDGED/RESOLVED)`) so escalation stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

Action = Literal["ack", "resolve"]


@dataclass(frozen=True, slots=True)
class IncidentActionResult:
    """Outcome of an ack/resolve: `ok` False when the incident is unknown or refused."""

    ok: bool
    ref: str
    state: str = ""  # the incident's state afterwards (triggered/acknowledged/resolved)
    changed: bool = False  # False when it was already in that state (a replay)
    message: str = ""  # short human text, spoken or texted back


class Acker(Protocol):
    """Acknowledges or resolves incidents by code (e.g. K7Q) or numeric id."""

    async def ack(self, ref: str, by: str, via: str) -> IncidentActionResult:
        """Acknowledge incident `ref`; `by` is a person key or number, `via` voice/sms/…."""
        ...

    async def resolve(self, ref: str, by: str, via: str) -> IncidentActionResult:
        """Resolve incident `ref` by hand."""
        ...


_REPLY = re.compile(
    r"^\s*(4|6|ack|acknowledge|ok|resolve|res)\b[\s:#,.-]*([A-Za-z0-9]+)?\s*$", re.IGNORECASE
)
_WORDS: dict[str, Action] = {
    "4": "ack",
    "ack": "ack",
    "acknowledge": "ack",
    "ok": "ack",
    "6": "resolve",
    "resolve": "resolve",
    "res": "resolve",
}


def parse_reply(body: str) -> tuple[Action, str | None] | None:
    """Parse an SMS reply like `4 K7Q`, `ACK K7Q`, `resolve k7q` or a bare `4`.

    Returns (action, incident ref or None when omitted), or None when it is not a command.
    """
    m = _REPLY.match(body or "")
    if not m:
        return None
    ref = m.group(2)
    return _WORDS[m.group(1).lower()], ref.upper() if ref else None


def digit_action(digits: str) -> Action | Literal["repeat"] | None:
    """Map a keypress to an action: 4 ack, 6 resolve, 9 repeat."""
    key = (digits or "").strip()[:1]
    if key == "4":
        return "ack"
    if key == "6":
        return "resolve"
    if key == "9":
        return "repeat"
    return None
