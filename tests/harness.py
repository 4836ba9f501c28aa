"""An in-process nocd pipeline with a fake clock: observations in, incidents out.

The same Pipeline, IncidentEngine and Store the daemon runs, minus the scheduler and the
network, so scenario tests can assert exact outcomes deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from nocd.active_hours import make_gate
from nocd.clock import FakeClock
from nocd.config import Config
from nocd.configload import load_text
from nocd.incidents.actions import IncidentActions
from nocd.incidents.engine import IncidentEngine
from nocd.incidents.model import Incident, load
from nocd.incidents.timeline import TimelineEvent, events
from nocd.metrics import Metrics
from nocd.model import FailureClass, Observation
from nocd.pipeline import Pipeline
from nocd.store import Store


@dataclass
class Harness:
    """The wired pipeline; `feed` judges one observation, `flush` runs the batch."""

    config: Config
    clock: FakeClock
    store: Store
    metrics: Metrics
    pipeline: Pipeline
    engine: IncidentEngine
    actions: IncidentActions

    @classmethod
    async def start(cls, yaml_text: str, db: Path, clock: FakeClock | None = None) -> Harness:
        """Build everything from a YAML config over a store file."""
        cfg = load_text(yaml_text, "test.yaml")
        clock = clock or FakeClock()
        store = await Store.open(db)
        metrics = Metrics(CollectorRegistry())
        pipeline = Pipeline(store, clock, metrics, judge_gate=make_gate(lambda: cfg))
        await pipeline.load()
        engine = IncidentEngine(cfg, pipeline, clock, metrics)
        await engine.load(store.reader)
        pipeline.handlers.append(engine.handle)
        flap = cfg.incidents.flapping
        pipeline.set_checks(cfg.checks, (flap.window, flap.high, flap.low))
        return cls(
            cfg, clock, store, metrics, pipeline, engine, IncidentActions(store, engine, clock)
        )

    def feed(
        self,
        name: str,
        ok: bool,
        failure: FailureClass = FailureClass.REFUSED,
        detail: str = "",
        **values: object,
    ) -> float | None:
        """Judge one observation of check `name`."""
        cfg = self.config.check(name)
        obs = (
            Observation.success(detail or "ok", 0.01, **values)
            if ok
            else Observation.failed(failure, detail or f"{failure.value}", 0.01, **values)
        )
        return self.pipeline.on_result(cfg, obs, 0.0)

    def fail(self, name: str, times: int = 1, **values: object) -> None:
        """Feed `times` failures, advancing the clock a little between them."""
        for _ in range(times):
            self.feed(name, False, **values)
            self.clock.advance(1)

    def recover(self, name: str, times: int = 1) -> None:
        """Feed `times` successes."""
        for _ in range(times):
            self.feed(name, True)
            self.clock.advance(1)

    async def flush(self) -> None:
        """Run the batch (state persistence + incident engine) in one transaction."""
        await self.pipeline.flush()

    async def incidents(self) -> list[Incident]:
        """Every incident, oldest first."""
        async with self.store.reader.execute("SELECT id FROM incidents ORDER BY id") as cur:
            ids = [r[0] for r in await cur.fetchall()]
        out = []
        for i in ids:
            inc = await load(self.store.reader, i)
            assert inc is not None
            out.append(inc)
        return out

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        """The incident's timeline."""
        return await events(self.store.reader, incident_id)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()
