"""What a page says: voice prompts, SMS texts, storm bundles and digests (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from nocd.incidents.model import Incident

SMS_LIMIT = 600  # a few concatenated segments; Twilio accepts up to 1600 characters
KEYS_PROMPT = "Press 4 to acknowledge, 6 to resolve, 9 to repeat."


def spell(code: str) -> str:
    """Spell a code for text-to-speech (`K7Q` → `K 7 Q`) so it is not read as a word."""
    return " ".join(code)


def _label(inc: Incident) -> str:
    return inc.severity.value.capitalize()


def voice_text(incidents: Sequence[Incident]) -> str:
    """The spoken alert (without the keypad prompt)."""
    if len(incidents) == 1:
        inc = incidents[0]
        return f"{_label(inc)}: {inc.title}. Incident {spell(inc.code)}."
    first = incidents[0]
    more = len(incidents) - 1
    return (
        f"{len(incidents)} incidents need attention. First: {_label(first)}: {first.title}, "
        f"incident {spell(first.code)}, and {more} more. Your keypress applies to all of them."
    )


def sms_text(incidents: Sequence[Incident], tag: str = "") -> str:
    """The SMS for one or several incidents, with reply instructions and codes."""
    if len(incidents) == 1:
        inc = incidents[0]
        body = (
            f"nocd {inc.severity.priority} {inc.severity.value.upper()} {inc.code}: {inc.title}. "
            f"Reply 4 {inc.code} to ack, 6 {inc.code} to resolve."
        )
    else:
        lines = [f"nocd: {len(incidents)} incidents:"]
        for inc in incidents:
            lines.append(f"{inc.code} {inc.severity.value}: {inc.title}")
        lines.append("Reply 4 CODE to ack, 6 CODE to resolve.")
        body = "\n".join(lines)
    if tag:
        body = f"{body} {tag}"
    return body if len(body) <= SMS_LIMIT else body[: SMS_LIMIT - 1] + "…"


def digest_text(incidents: Sequence[Incident], when: str, limit: int | None = SMS_LIMIT) -> str:
    """The morning digest of degraded incidents raised outside support hours."""
    lines = [f"nocd digest {when}: {len(incidents)} degraded incident(s) since closing:"]
    for inc in incidents:
        lines.append(f"{inc.code}: {inc.title}")
    text = "\n".join(lines)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
