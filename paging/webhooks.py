"""Twilio webhooks: TwiML for calls, keypress and SMS acks, delivery status callbacks.

Contract: `routes(pager, acker) -> list[aiohttp.web.RouteDef]`, POST only:
    /twilio/voice/{key}    TwiML: the alert inside <Gather numDigits=1>
    /twilio/gather/{key}   digits: 4 ack, 6 resolve, 9 repeat; the result is spoken back
    /twilio/status/{key}   call/message status callbacks (recorded; completed is not an ack)
    /twilio/sms            inbound replies `4 K7Q`, `ACK K7Q`, `6 K7Q`, `RESOLVE K7Q`
Every request must carry a valid X-Twilio-Signature computed over the CONFIGURED public
URL (daemon.public_url + path) and the POST parameters; otherwise 403 and nothing changes.
Without a Twilio provider or a public URL every request is refused. A replayed keypress or
SMS (same CallSid+digit / MessageSid) gets the first reply again and changes nothing;
so does a replayed status callback (same SID and status) or voicemail answer (same call).
Pages sent from memory while the store refused writes (paging.memory) are served too: their
keypress or SMS ack is taken in memory and applied when the incident is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from twilio.request_validator import RequestValidator

from nocd.incidents.model import IncidentState
from paging import twiml
from paging.acks import Acker, IncidentActionResult, digit_action, parse_reply
from paging.messages import spell
from paging.pager import Pager

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
XML = "application/xml"


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type=XML)


class _Webhooks:
    def __init__(self, pager: Pager, acker: Acker) -> None:
        self.pager = pager
        self.acker = acker

    async def validated(self, request: web.Request) -> dict[str, str] | None:
        """The POST parameters when the signature is valid for the configured URL."""
        provider = self.pager.paging.provider
        base = self.pager.public_url
        if provider.type != "twilio" or base is None:
            return None
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        url = base + request.raw_path
        signature = request.headers.get("X-Twilio-Signature", "")
        validator = RequestValidator(provider.auth_token.get_secret_value())
        if not signature or not validator.validate(url, params, signature):
            log.warning(
                "twilio webhook refused: bad signature", path=request.path, remote=request.remote
            )
            return None
        return params

    def guarded(
        self, fn: Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]
    ) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            params = await self.validated(request)
            if params is None:
                return web.Response(status=403, text="invalid signature\n")
            return await fn(request, params)

        return handler

    def _url(self, kind: str, key: str) -> str:
        return f"{self.pager.public_url}/twilio/{kind}/{key}"

    async def voice(self, request: web.Request, params: dict[str, str]) -> web.Response:
        key = request.match_info["key"]
        rec = await self.pager.page(key)
        if rec is None:
            mem = self.pager.memory.page(key) if self.pager.memory is not None else None
            if mem is not None and self._memory_codes(mem.groups):
                gather = self._url("gather", key)
                return _xml(twiml.alert(mem.text, gather, self.pager.paging.speak_repeat))
            return _xml(twiml.confirm("This alert is no longer available. Goodbye."))
        incidents = await self.pager.incidents_of(rec)
        live = [i for i in incidents if i.state is IncidentState.TRIGGERED]
        if not live:
            done = ", ".join(f"{spell(i.code)} is {i.state.value}" for i in incidents)
            return _xml(twiml.confirm(f"Incident {done}. Nothing to do. Goodbye."))
        answered_by = params.get("AnsweredBy", "")
        if answered_by.startswith("machine") or answered_by == "fax":
            # Voicemail: leave the alert, which does not acknowledge anything. Noted once
            # per call: a replayed request must not add the note again.
            request_id = f"voice-machine:{params.get('CallSid', '')}:{key}"
            if await self.pager.seen(request_id) is None:
                await self.pager.note(
                    [i.id for i in live],
                    "delivery",
                    f"call to {rec.person} answered by {answered_by}: message "
                    "left, not an acknowledgement",
                )
                await self.pager.remember(request_id, "")
            return _xml(twiml.say_only(rec.text + " Reply to the SMS to acknowledge.", 1))
        return _xml(twiml.alert(rec.text, self._url("gather", key), self.pager.paging.speak_repeat))

    async def gather(self, request: web.Request, params: dict[str, str]) -> web.Response:
        key = request.match_info["key"]
        digits = params.get("Digits", "")
        request_id = f"gather:{params.get('CallSid', '')}:{key}:{digits}"
        replay = await self._seen(request_id)
        if replay is not None:
            return _xml(replay)
        rec = await self.pager.page(key)
        mem = None
        if rec is None and self.pager.memory is not None:
            mem = self.pager.memory.page(key)
        if rec is None and mem is None:
            return _xml(twiml.confirm("This alert is no longer available. Goodbye."))
        action = digit_action(digits)
        if action == "repeat":
            return _xml(twiml.redirect(self._url("voice", key)))
        if action is None:
            return _xml(twiml.redirect(self._url("voice", key), "Sorry, that key is not valid."))
        if rec is not None:
            by = rec.person or params.get("To", "unknown")
            codes = [inc.code for inc in await self.pager.incidents_of(rec)]
        else:
            assert mem is not None
            by, codes = mem.person, self._memory_codes(mem.groups, live=False)
        spoken = []
        for code in codes:
            res = await self._act(action, code, by, "voice")
            spoken.append(_spoken(res, action))
        reply = twiml.confirm(" ".join(spoken) + " Goodbye.")
        await self._remember(request_id, reply)
        return _xml(reply)

    def _memory_codes(self, groups: tuple[str, ...], live: bool = True) -> list[str]:
        """Codes of a memory page's outages (only those not yet acknowledged, if `live`)."""
        memory = self.pager.memory
        if memory is None:
            return []
        outs = [o for g in groups if (o := memory.outages.get(g)) is not None]
        return [o.code for o in outs if not live or o.acked is None]

    async def _seen(self, request_id: str) -> str | None:
        memory = self.pager.memory
        if memory is not None and request_id in memory.seen:
            return memory.seen[request_id]
        return await self.pager.seen(request_id)

    async def _remember(self, request_id: str, reply: str) -> None:
        try:
            await self.pager.remember(request_id, reply)
        except Exception as exc:  # store unwritable: keep the replay guard in memory
            if self.pager.memory is None:
                raise
            self.pager.memory.seen[request_id] = reply
            log.warning("webhook reply remembered in memory only", error=str(exc))

    async def status(self, request: web.Request, params: dict[str, str]) -> web.Response:
        key = request.match_info["key"]
        status = params.get("CallStatus") or params.get("MessageStatus") or ""
        sid = params.get("CallSid") or params.get("MessageSid") or ""
        # A replay (same SID, page and status) changes nothing, even after a later status:
        # an old "ringing" sent again must not move an answered call back.
        request_id = f"status:{sid}:{key}:{status.strip().lower()}"
        if sid and await self.pager.seen(request_id) is not None:
            return web.Response(status=200)
        known = await self.pager.on_status(key, status, params.get("AnsweredBy") or None)
        if known and sid:
            await self.pager.remember(request_id, "")
        if not known and self.pager.memory is not None and self.pager.memory.page(key):
            log.info("status of a page sent from memory", key=key, status=status)
            known = True
        return web.Response(status=200 if known else 404)

    async def sms(self, request: web.Request, params: dict[str, str]) -> web.Response:
        request_id = f"sms:{params.get('MessageSid', '')}"
        replay = await self._seen(request_id)
        if replay is not None:
            return _xml(replay)
        sender = params.get("From", "")
        person = self.pager.person_by_number(sender)
        if person is None:
            log.warning("sms from unknown number ignored", sender=sender)
            return _xml(twiml.sms_reply("nocd: this number is not an on-call contact."))
        parsed = parse_reply(params.get("Body", ""))
        if parsed is None:
            text = "nocd: reply 4 CODE to acknowledge or 6 CODE to resolve, e.g. 4 K7Q."
            return _xml(twiml.sms_reply(text))
        action, ref = parsed
        if ref is None:
            ref = await self._only_open_incident(person)
            if ref is None:
                return _xml(twiml.sms_reply("nocd: which incident? Reply e.g. 4 K7Q."))
        res = await self._act(action, ref, person, "sms")
        reply = twiml.sms_reply(f"nocd: {_texted(res, action)}")
        await self._remember(request_id, reply)
        return _xml(reply)

    async def _act(self, action: str, ref: str, by: str, via: str) -> IncidentActionResult:
        memory = self.pager.memory
        if memory is not None and memory.by_code(ref) is not None:
            # Its incident is not written yet (store unwritable): the ack is taken in memory.
            memory.ack(ref, by, via)
            note = "" if action == "ack" else " (resolve when nocd can write its database)"
            return IncidentActionResult(
                True, ref.upper(), "acknowledged", True, f"acknowledged in memory{note}"
            )
        try:
            if action == "ack":
                return await self.acker.ack(ref, by, via)
            return await self.acker.resolve(ref, by, via)
        except Exception as exc:  # noqa: BLE001 - the caller still gets an answer
            log.error("ack failed", ref=ref, action=action, error=str(exc))
            return IncidentActionResult(False, ref, message="internal error, try again")

    async def _only_open_incident(self, person: str) -> str | None:
        codes = await self.pager.open_codes_paged_to(person)
        if self.pager.memory is not None:
            codes += self.pager.memory.codes_paged_to(person)
        return codes[0] if len(codes) == 1 else None


def _spoken(res: IncidentActionResult, action: str) -> str:
    verb = "acknowledged" if action == "ack" else "resolved"
    if not res.ok:
        return f"Incident {spell(res.ref)} could not be {verb}: {res.message}."
    if not res.changed:
        return f"Incident {spell(res.ref)} was already {res.state or verb}."
    return f"Incident {spell(res.ref)} {verb}. Thank you."


def _texted(res: IncidentActionResult, action: str) -> str:
    verb = "acknowledged" if action == "ack" else "resolved"
    if not res.ok:
        return f"{res.ref} could not be {verb}: {res.message or 'unknown incident'}"
    if not res.changed:
        return f"{res.ref} was already {res.state or verb}"
    return f"{res.ref} {verb}. Thank you."


def routes(pager: Pager, acker: Acker) -> list[web.RouteDef]:
    """The Twilio webhook routes (POST only, signature-checked)."""
    w = _Webhooks(pager, acker)
    return [
        web.post("/twilio/voice/{key}", w.guarded(w.voice)),
        web.post("/twilio/gather/{key}", w.guarded(w.gather)),
        web.post("/twilio/status/{key}", w.guarded(w.status)),
        web.post("/twilio/sms", w.guarded(w.sms)),
    ]
