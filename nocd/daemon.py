"""The daemon's lifecycle: start, run, reload on SIGHUP, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from checks import heartbeat as heartbeat_check
from checks.base import CheckConfig
from checks.resources import close_all
from nocd import __version__
from nocd.active_hours import make_gate
from nocd.clock import Clock, SystemClock
from nocd.config import Config
from nocd.configload import ConfigError, load_file
from nocd.incidents.actions import IncidentActions
from nocd.incidents.engine import IncidentEngine
from nocd.intake import alertmanager as am_intake
from nocd.intake import heartbeat as hb_intake
from nocd.intake.traps import TrapReceiver
from nocd.looplag import LoopLag
from nocd.metrics import Metrics
from nocd.model import Observation
from nocd.outbox import OutboxWorker
from nocd.pipeline import Pipeline
from nocd.scheduler import Scheduler
from nocd.sdnotify import Notifier
from nocd.selfcheck import Heartbeat
from nocd.store import Store
from nocd.tickets.service import Tickets
from nocd.web import api, dashboard, health
from nocd.web.auth import TokenAuth
from nocd.web.params import errors as api_errors
from nocd.wiring import PagingAcker
from paging import webhooks as twilio_webhooks
from paging.ical_feed import IcalFeeds
from paging.memory import MemoryPager
from paging.notifiers import build_notifier
from paging.pager import Pager

log = structlog.get_logger(__name__)

HEARTBEAT_STALE = 5.0  # seconds without a scheduler pass before nocd calls itself unhealthy


class Daemon:
    """One running nocd: config, store, scheduler, pipeline, outbox and the HTTP listener."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        twilio_base_url: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.twilio_base_url = twilio_base_url  # tests point the Twilio client at a fake
        self.registry = CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(self.registry, __version__)
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.scheduler: Scheduler | None = None
        self.outbox: OutboxWorker | None = None
        self.engine: IncidentEngine | None = None
        self.actions: IncidentActions | None = None
        self.tickets: Tickets | None = None
        self.traps: TrapReceiver | None = None
        self.sip_responder: Any = None
        self.alertmanager: am_intake.AlertmanagerIntake | None = None
        self.pager: Pager | None = None
        self.memory: MemoryPager | None = None  # pages from memory while the store is unwritable
        self.ical_feeds = IcalFeeds()
        self._paging_provider = config.paging.provider
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        # Set when an escalation step became due now: the paging loop runs at once instead of
        # at its next poll (issue #9: decision → page request within 1 s at p99).
        self._paging_due = asyncio.Event()
        self.paging_passes = 0  # paging loop passes run (tests observe the loop through it)
        self.poll_fallback = 1.0  # seconds between paging/outbox polls when nothing wakes them
        self.bound: tuple[str, int] | None = None
        self.reload_hooks: list[Callable[[Config], None]] = []
        self.auth = TokenAuth(config.api)  # API bearer tokens; the dashboard logs in with them
        self.reload_hooks.append(lambda c: self.auth.set_config(c.api))

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, start the listener and the scheduler, then report READY."""
        cfg = self.config
        self.notifier.status("opening state database")
        self.store = await Store.open(cfg.daemon.state_path)
        self.metrics.store_ok.set(1)
        self.store.on_writable_change(self._store_writable_changed)
        self.pipeline = Pipeline(
            self.store, self.clock, self.metrics, judge_gate=make_gate(lambda: self.config)
        )
        loaded = await self.pipeline.load()
        self.engine = IncidentEngine(cfg, self.pipeline, self.clock, self.metrics)
        self.engine.store = self.store
        await self.engine.load(self.store.reader)
        self.pipeline.handlers.append(self.engine.handle)
        self.actions = IncidentActions(self.store, self.engine, self.clock)
        self.reload_hooks.append(self.engine.set_config)
        self.outbox = OutboxWorker(self.store, self.clock)
        self._start_tickets(cfg)
        self._start_paging(cfg)
        heartbeat_check.book()  # heartbeats' grace period counts from start-up
        self.alertmanager = am_intake.AlertmanagerIntake(
            lambda: [c for c in self.config.checks if c.type == "alertmanager"],  # type: ignore[misc]
            self.submit,
        )
        await self._start_traps(cfg)
        await self._start_sip_responder(cfg)
        recovered = await self.outbox.recover()
        self.scheduler = Scheduler(
            self.pipeline.on_result,
            max_concurrency=cfg.daemon.max_concurrency,
            tick=cfg.daemon.tick,
            observe_lateness=self.metrics.lateness.observe,
        )
        self._apply(cfg)
        await self._start_http()
        self._spawn(self.scheduler.run(), "scheduler")
        self._spawn(self.pipeline.run(), "pipeline")
        self._spawn(self.outbox.run(self.poll_fallback), "outbox")
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._housekeeping(), "housekeeping")
        self._spawn(self._paging_loop(self.poll_fallback), "paging")
        # A dead man's switch outside the host: pinged only while every readiness check holds.
        self.heartbeat = Heartbeat(
            lambda: self.config.daemon, lambda: all(self.readiness().values())
        )
        self._spawn(self.heartbeat.run(), "heartbeat")
        self._spawn(LoopLag(self.registry).run(), "looplag")  # nocd_event_loop_lag_seconds
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(time.time())
        self.notifier.ready()
        self.notifier.status(self._status_line())
        log.info(
            "nocd started",
            version=__version__,
            checks=len(cfg.checks),
            listen=self.bound,
            states_restored=loaded,
            outbox_in_doubt=recovered,
        )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A dead core task leaves readiness false and the watchdog unfed: systemd restarts us.
            log.error("core task died", task=task.get_name(), error=repr(exc))

    def _apply(self, cfg: Config) -> None:
        assert self.pipeline is not None and self.scheduler is not None
        flap = cfg.incidents.flapping
        self.pipeline.set_checks(cfg.checks, (flap.window, flap.high, flap.low))
        self.scheduler.set_checks(cfg.checks)
        self.config = cfg
        for hook in self.reload_hooks:
            hook(cfg)

    async def _start_http(self) -> None:
        app = self.build_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, _, port = self.config.daemon.listen.rpartition(":")
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            addr = sockets[0].getsockname()
            self.bound = (str(addr[0]), int(addr[1]))

    def build_app(self) -> web.Application:
        """The aiohttp application with every route nocd serves."""
        app = web.Application(client_max_size=1 << 20, middlewares=[api_errors])
        app.router.add_get("/metrics", make_aiohttp_handler(self.registry))
        app.add_routes(health.routes(self.readiness))
        if self.pager is not None and self.actions is not None:
            app.add_routes(twilio_webhooks.routes(self.pager, PagingAcker(self.actions)))
        app.add_routes(
            hb_intake.routes(
                self._authorize,
                lambda name: any(
                    c.name == name and c.type == "heartbeat" for c in self.config.checks
                ),
                self.submit,
            )
        )
        if self.alertmanager is not None:
            app.add_routes(self.alertmanager.routes(self._authorize))
        app.add_routes(api.routes(self))
        dashboard.setup(app, self)  # `/`, /login, /ui/…, /status, /static/…
        return app

    def readiness(self) -> dict[str, bool]:
        """Named readiness conditions for /readyz."""
        return {
            "scheduler": self.scheduler_alive(),
            "store_writable": bool(
                self.pipeline
                and self.pipeline.store_writable
                and (self.store is None or self.store.writable)
            ),
            "config_loaded": True,
        }

    def scheduler_alive(self) -> bool:
        """True while the scheduler task runs and passed its loop recently."""
        s = self.scheduler
        if s is None or not s.running:
            return False
        return asyncio.get_running_loop().time() - s.heartbeat < HEARTBEAT_STALE

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        period = min(1.0, interval / 3) if interval else 1.0
        while True:
            if self.scheduler_alive():
                self.notifier.watchdog()
            self._refresh_gauges()
            await asyncio.sleep(period)

    def _authorize(self, request: web.Request, scope: str) -> None:
        """Token check for intake endpoints (raises 401/403)."""
        self.auth.authorize(request, scope)

    def submit(self, name: str, obs: Observation) -> None:
        """Feed an observation from outside (trap, Alertmanager, heartbeat) into the pipeline."""
        if self.pipeline is not None:
            self.pipeline.submit(name, obs)

    async def _start_sip_responder(self, cfg: Config) -> None:
        """Start the demo SIP responder when `daemon.sip_responder` asks for one."""
        if cfg.daemon.sip_responder is None:
            return
        from checks.sip.responder import SipResponder

        host, _, port = cfg.daemon.sip_responder.listen.rpartition(":")
        responder = SipResponder(
            host.strip("[]"), int(port), int(port), status=cfg.daemon.sip_responder.status
        )
        await responder.start()
        self.sip_responder = responder
        log.info("demo SIP responder listening", listen=cfg.daemon.sip_responder.listen)

    async def _start_traps(self, cfg: Config) -> None:
        """(Re)start the trap receiver when `daemon.traps` is configured."""
        if self.traps is not None:
            await self.traps.stop()
            self.traps = None
        if cfg.daemon.traps is None:
            return
        rules = [c for c in cfg.checks if c.type == "snmp_trap"]
        receiver = TrapReceiver(cfg.daemon.traps, rules, self.submit)  # type: ignore[arg-type]
        await receiver.start()
        self.traps = receiver

    def _start_tickets(self, cfg: Config) -> None:
        assert self.engine is not None and self.store is not None
        self.tickets = Tickets(cfg, self.store, self.clock)
        self.engine.subscribe(self.tickets, pages=False)
        self._register_ticket_handlers()
        self.reload_hooks.append(self.tickets.reload)
        self.reload_hooks.append(lambda _cfg: self._register_ticket_handlers())

    def _register_ticket_handlers(self) -> None:
        assert self.tickets is not None and self.outbox is not None
        for kind, handler in self.tickets.handlers().items():
            if not self.outbox.has_handler(kind):  # a sink added by a reload
                self.outbox.register(kind, handler)

    def _start_paging(self, cfg: Config) -> None:
        assert self.engine is not None and self.store is not None and self.outbox is not None
        notifier = build_notifier(cfg.paging.provider, base_url=self.twilio_base_url)
        if notifier.dry_run:
            log.warning("paging in DRY-RUN mode: no provider credentials; pages are only logged")
        self.pager = Pager(
            self.store, cfg.paging, cfg.support_hours, notifier, self.clock, cfg.daemon.public_url
        )
        self.pager.on_wake = self.outbox.wake
        self.pager.on_due = self._paging_due.set
        self.memory = MemoryPager(
            self.pager,
            self.store,
            self.engine.unrecorded,
            self.engine.failing,
            self.clock,
            self.registry,
        )
        self.pager.memory = self.memory
        self.engine.paged_from_memory = self.memory.paged
        # Last batch handler: steps made due by this flush fire in its own transaction.
        assert self.pipeline is not None
        self.pipeline.handlers.append(self._fire_in_flush)
        self.pager.fire_in_flush_enabled = True
        self.engine.subscribe(self.pager, pages=True)
        self.outbox.register("notify", self.pager.deliver_notify)
        self.outbox.register("digest", self.pager.deliver_digest)
        self.reload_hooks.append(self._reconfigure_paging)

    def _reconfigure_paging(self, cfg: Config) -> None:
        """Reload: new policies at once; a changed provider gets a new notifier."""
        assert self.pager is not None
        old = self.pager.notifier
        notifier = None
        if cfg.paging.provider != self._paging_provider:
            notifier = build_notifier(cfg.paging.provider, base_url=self.twilio_base_url)
            self._spawn(old.close(), "close-old-notifier")
        self.pager.configure(
            cfg.paging,
            cfg.support_hours,
            cfg.daemon.public_url,
            self.ical_feeds.shifts,
            notifier=notifier,
        )
        self._paging_provider = cfg.paging.provider

    async def _paging_loop(self, period: float = 1.0) -> None:
        """Fire due escalation steps and digests at once when woken, else every `period`
        seconds (persisted deadlines); refresh on-call iCal files and feeds when each is due."""
        assert self.pager is not None
        while True:
            # Cleared before the pass: a step recorded due during the pass runs another pass.
            self._paging_due.clear()
            self.paging_passes += 1
            writable = self.store is None or self.store.writable
            if self.memory is not None:
                try:
                    # First, and whatever the store says: a full disk must not delay it.
                    reason = self.store.write_error if self.store is not None else None
                    await self.memory.run(self.clock.now(), writable, reason)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a memory-pager bug must not stop stored paging
                    log.error("paging from memory failed", error=repr(exc))
            try:
                now = self.clock.now()
                await self.ical_feeds.refresh(self.config.paging, now)
                self.pager.set_ical(self.ical_feeds.shifts)
                if writable:  # else it could only be refused; flushes and ticks find space
                    await self._apply_memory_acks()
                    await self.pager.run_due(now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not end paging
                log.error("paging loop failed; retrying", error=str(exc))
            # The poll is the fallback for steps timed in the future; asyncio.timeout, not
            # wait_for (3.11's wait_for can swallow a cancel, see scheduler).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._paging_due.wait()

    async def _apply_memory_acks(self) -> None:
        """Acks of stored incidents taken in memory while the store refused writes."""
        if self.memory is None or self.actions is None:
            return
        acks = self.memory.take_acks()
        for i, (code, by, via) in enumerate(acks):
            try:
                await self.actions.ack(code, by, f"{via} (taken in memory)")
            except Exception:
                self.memory.requeue_acks(acks[i:])  # refused again: the next writable pass
                raise

    async def _fire_in_flush(self, conn: object, _changes: object, now: float) -> None:
        assert self.pager is not None and isinstance(conn, aiosqlite.Connection)
        await self.pager.fire_in_flush(conn, now)

    def _store_writable_changed(self, writable: bool, reason: str | None) -> None:
        """The store stopped or started accepting writes: say so, and page at once."""
        self.metrics.store_ok.set(1 if writable else 0)
        if writable:
            log.warning("state database writable again; stored paging resumes")
        else:
            log.error(
                "state database refuses writes: paging from memory until it accepts them",
                reason=reason,
            )
        self._paging_due.set()  # memory pager now (unwritable) or due steps now (writable)
        if writable and self.outbox is not None:
            self.outbox.wake()

    async def _housekeeping(self, period: float = 1.0) -> None:
        """Once a second: hold-down resolves, outbox gauge."""
        assert self.store is not None and self.engine is not None and self.outbox is not None
        while True:
            await asyncio.sleep(period)
            try:
                async with self.store.transaction() as conn:
                    await self.engine.tick(conn)
                self.metrics.outbox_pending.set(await self.outbox.pending())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep going; the next pass retries
                log.error("housekeeping failed", error=str(exc))

    def _refresh_gauges(self) -> None:
        if self.scheduler is not None:
            self.metrics.inflight.set(self.scheduler.inflight)

    def _status_line(self) -> str:
        n = len(self.config.checks)
        down = sum(1 for s in (self.pipeline.states.values() if self.pipeline else ()) if not s.up)
        return f"{n} checks, {down} down"

    async def reload(self) -> bool:
        """Re-read the config file; swap atomically if valid, keep the old one otherwise."""
        if self.config_path is None:
            return False
        self.notifier.reloading(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        try:
            new = await asyncio.to_thread(load_file, self.config_path)
            if new.daemon.listen != self.config.daemon.listen:
                log.warning("daemon.listen changed; takes effect at the next restart")
            if new.daemon.state_path != self.config.daemon.state_path:
                log.warning("daemon.state_path changed; takes effect at the next restart")
            self._apply(new)
            await self._start_traps(new)
        except ConfigError as exc:
            self.metrics.reload_ok.set(0)
            log.error(
                "config reload refused; keeping the running config",
                errors=[str(i) for i in exc.issues],
            )
            self.notifier.ready()
            return False
        except Exception as exc:  # noqa: BLE001 - a reload bug must not take the daemon down
            self.metrics.reload_ok.set(0)
            log.error("config reload failed; keeping the running config", error=repr(exc))
            self.notifier.ready()
            return False
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(time.time())
        self.notifier.ready()
        self.notifier.status(self._status_line())
        log.info("config reloaded", checks=len(new.checks))
        return True

    def request_stop(self) -> None:
        """Ask `serve()` to return (SIGTERM/SIGINT)."""
        self._stop.set()

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Drain in-flight probes within the grace period, flush state, close everything."""
        self.notifier.stopping()
        grace = self.config.daemon.shutdown_grace
        log.info("nocd stopping", grace_s=grace)
        sched = next((t for t in self._tasks if t.get_name() == "scheduler"), None)
        if sched is not None:
            sched.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sched
        cancelled = await self.scheduler.drain(grace) if self.scheduler else 0
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.pipeline is not None:
            await self.pipeline.flush()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.traps is not None:
            await self.traps.stop()
        if self.sip_responder is not None:
            await self.sip_responder.stop()
        await close_all()
        if self.pager is not None:
            await self.pager.notifier.close()
        await self.ical_feeds.close()
        if self.store is not None:
            await self.store.close()
        log.info("nocd stopped", probes_cancelled=cancelled)

    # ---- helpers for other components ------------------------------------------------

    def checks(self) -> tuple[CheckConfig, ...]:
        """The running config's checks."""
        return self.config.checks
