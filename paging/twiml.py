"""TwiML documents nocd serves to Twilio, built with the official library's builders."""

from __future__ import annotations

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from paging.messages import KEYS_PROMPT


def alert(text: str, gather_url: str, loops: int = 2) -> str:
    """Speak the alert inside a one-digit <Gather>; with no keypress, ask once more."""
    r = VoiceResponse()
    g = r.gather(num_digits=1, action=gather_url, method="POST", timeout=8)
    g.say(f"{text} {KEYS_PROMPT}", loop=loops)
    r.say("No key was pressed. The incident is not acknowledged. Goodbye.")
    r.hangup()
    return str(r)


def say_only(text: str, loops: int = 2) -> str:
    """Speak `text` and hang up (no public URL for keypresses: ack by SMS or the API)."""
    r = VoiceResponse()
    r.say(text, loop=loops)
    r.hangup()
    return str(r)


def confirm(text: str) -> str:
    """Speak a confirmation and hang up."""
    return say_only(text, 1)


def redirect(url: str, text: str | None = None) -> str:
    """Optionally speak `text`, then fetch the TwiML at `url` again (repeat the alert)."""
    r = VoiceResponse()
    if text:
        r.say(text)
    r.redirect(url, method="POST")
    return str(r)


def sms_reply(text: str) -> str:
    """A <Message> reply to an inbound SMS."""
    m = MessagingResponse()
    m.message(text)
    return str(m)


def empty_sms() -> str:
    """An empty messaging response (no reply)."""
    return str(MessagingResponse())
