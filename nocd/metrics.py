"""Every Prometheus metric nocd exports, defined in one place on an injected registry.

Label values are bounded: check names (from config), enum values, site names. The per-check
series (up, severity, duration, probes, flapping) and the scheduler's lateness histogram are
plain lists exported at scrape time, not prometheus_client children: a child costs ~0.7 KiB
and a lock per update (170 MiB and ~3.5 µs per probe at 50,000 checks, bench_daemon_sip.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nocd.model import FailureClass, Observation, Severity
from nocd.state import CheckState, TransitionKind

_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LightHistogram(Collector):
    """An unlabelled histogram for one hot caller: a bisect and two adds, no lock.

    Everything runs on the event loop's thread; a scrape from another thread may see a
    count and a sum one observation apart, which Prometheus tolerates.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry
    ) -> None:
        self._name, self._doc = name, documentation
        self._bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count one value (le buckets: a value equal to a bound falls in that bucket)."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def describe(self) -> Iterator[Metric]:
        """The family name, so the registry refuses a duplicate."""
        yield HistogramMetricFamily(self._name, self._doc)

    def collect(self) -> Iterator[Metric]:
        """Cumulative buckets as Prometheus expects them."""
        counts, total = list(self._counts), self._sum
        buckets, acc = [], 0
        for bound, c in zip([*self._bounds, float("inf")], counts, strict=True):
            acc += c
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(acc)))
        fam = HistogramMetricFamily(self._name, self._doc)
        fam.add_metric([], buckets, total)
        yield fam


_PER_CHECK = (
    ("up", "nocd_check_up", "1 when the check's hard state is OK, else 0."),
    (
        "severity",
        "nocd_check_severity",
        "Hard severity of the check: 0 ok, 1 unknown, 2 low, 3 degraded, 4 critical.",
    ),
    ("duration", "nocd_check_duration_seconds", "Duration of the last probe."),
    ("flapping", "nocd_check_flapping", "1 while the check is flapping."),
)


class PerCheck(Collector):
    """Per-check gauges and the probe counter as parallel lists indexed by check."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.up: list[float] = []
        self.severity: list[float] = []
        self.duration: list[float] = []
        self.flapping: list[float] = []
        self.probes: list[float] = []
        registry.register(self)

    def set_checks(self, names: Iterable[str]) -> None:
        """Keep the values of known checks, add new ones (up, 0 probes), drop removed ones."""
        old = {n: i for n, i in self.index.items()}
        cols = (self.up, self.severity, self.duration, self.flapping, self.probes)
        new_names = list(dict.fromkeys(names))
        new_cols: tuple[list[float], ...] = ([], [], [], [], [])
        for name in new_names:
            i = old.get(name)
            for col, new in zip(cols, new_cols, strict=True):
                new.append(col[i] if i is not None else 0.0)
            if i is None:
                new_cols[0][-1] = 1.0  # up until judged otherwise
        self.names = new_names
        self.index = {n: i for i, n in enumerate(new_names)}
        self.up, self.severity, self.duration, self.flapping, self.probes = new_cols

    def describe(self) -> Iterator[Metric]:
        """The family names, so the registry refuses duplicates."""
        for _attr, name, doc in _PER_CHECK:
            yield GaugeMetricFamily(name, doc, labels=["check"])
        yield CounterMetricFamily("nocd_check_probes", "Probes run per check.", labels=["check"])

    def collect(self) -> Iterator[Metric]:
        """One sample per check and family."""
        names = list(self.names)
        for attr, name, doc in _PER_CHECK:
            fam = GaugeMetricFamily(name, doc, labels=["check"])
            for check, value in zip(names, list(getattr(self, attr)), strict=False):
                fam.add_metric([check], value)
            yield fam
        counter = CounterMetricFamily(
            "nocd_check_probes", "Probes run per check.", labels=["check"]
        )
        for check, value in zip(names, list(self.probes), strict=False):
            counter.add_metric([check], value)
        yield counter


class FailureCounts(Collector):
    """Failed probes per check and failure class, created on first failure, exported at scrape.

    Not a prometheus_client Counter: a child per (check, failure) is ~0.7 KiB plus a lock and
    three GC-tracked objects, so an outage of 50,000 checks built 150,000 tracked objects
    while it lasted, and the full collections walking them stalled the loop 0.1–0.6 s
    (bench_daemon_sip.py), making probes late exactly when checks were failing. Nested
    dicts of strings and floats are not tracked by the GC.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counts: dict[str, dict[str, float]] = {}  # failure class → check → count
        registry.register(self)

    def inc(self, check: str, failure: str) -> None:
        """Count one failed probe."""
        by_check = self.counts.get(failure)
        if by_check is None:
            by_check = self.counts[failure] = {}
        by_check[check] = by_check.get(check, 0.0) + 1.0

    def value(self, check: str, failure: str) -> float:
        """The count of (check, failure), 0 when none."""
        return self.counts.get(failure, {}).get(check, 0.0)

    def keep(self, checks: set[str]) -> None:
        """Forget the series of checks no longer configured."""
        for by_check in self.counts.values():
            for name in [n for n in by_check if n not in checks]:
                del by_check[name]

    def describe(self) -> Iterator[Metric]:
        """The family name, so the registry refuses a duplicate."""
        yield CounterMetricFamily(
            "nocd_check_failures",
            "Failed probes per check and failure class.",
            labels=["check", "failure"],
        )

    def collect(self) -> Iterator[Metric]:
        """One sample per (check, failure) seen."""
        fam = CounterMetricFamily(
            "nocd_check_failures",
            "Failed probes per check and failure class.",
            labels=["check", "failure"],
        )
        for failure, by_check in list(self.counts.items()):
            for check, value in list(by_check.items()):
                fam.add_metric([check, failure], value)
        yield fam


class Metrics:
    """The daemon's metrics."""

    def __init__(self, registry: CollectorRegistry, version: str = "0") -> None:
        self.registry = registry
        r = registry
        Info("nocd_build", "nocd version.", registry=r).info({"version": version})
        self.per_check = PerCheck(r)
        # Failures are created on first use: checks × failure classes would be 20 series per
        # check, too many at 50,000 checks; `nocd_check_probes_total` is pre-created at zero.
        self.check_failures = FailureCounts(r)
        self.transitions = Counter(
            "nocd_state_transitions_total", "Hard state transitions.", ["kind"], registry=r
        )
        for kind in TransitionKind:
            self.transitions.labels(kind.value)
        self.lateness = LightHistogram(
            "nocd_scheduler_lateness_seconds",
            "How late probes start compared to their due time.",
            _LATENESS_BUCKETS,
            r,
        )
        self.inflight = Gauge("nocd_probes_inflight", "Probes running now.", registry=r)
        self.checks_configured = Gauge(
            "nocd_checks_configured", "Checks in the running config.", registry=r
        )
        self.reload_ok = Gauge(
            "nocd_config_last_reload_successful",
            "1 if the last config (re)load succeeded.",
            registry=r,
        )
        self.reload_ts = Gauge(
            "nocd_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config load.",
            registry=r,
        )
        self.incidents_open = Gauge(
            "nocd_incidents_open", "Open incidents by severity.", ["severity"], registry=r
        )
        for sev in (Severity.CRITICAL, Severity.DEGRADED, Severity.LOW, Severity.UNKNOWN):
            self.incidents_open.labels(sev.value)
        self.incidents_opened = Counter(
            "nocd_incidents_opened_total", "Incidents opened.", ["severity"], registry=r
        )
        self.suppressed = Counter(
            "nocd_notifications_suppressed_total",
            "Pages/tickets not sent and why.",
            ["reason"],
            registry=r,
        )
        for reason in ("maintenance", "silence", "flapping", "dependency", "inactive_hours"):
            self.suppressed.labels(reason)
        self.unsuppressed = Counter(
            "nocd_incidents_unsuppressed_total",
            "Suppressed incidents still failing when the suppression ended: ticketed and paged.",
            ["reason"],
            registry=r,
        )
        for reason in ("maintenance", "silence", "flapping"):
            self.unsuppressed.labels(reason)
        self.outbox_pending = Gauge(
            "nocd_outbox_pending", "Side effects waiting for delivery.", registry=r
        )
        self.outbox_results = Counter(
            "nocd_outbox_deliveries_total", "Outbox delivery attempts.", ["result"], registry=r
        )
        for res in ("delivered", "retry", "failed"):
            self.outbox_results.labels(res)
        self.phones_registered = Gauge(
            "nocd_site_phones_registered", "Phones registered per site.", ["site"], registry=r
        )
        self.phones_expected = Gauge(
            "nocd_site_phones_expected", "Phones expected per site.", ["site"], registry=r
        )
        self.snmp_value = Gauge(
            "nocd_snmp_value", "Numeric SNMP values read.", ["check", "oid"], registry=r
        )
        self.store_ok = Gauge(
            "nocd_store_writable", "1 while the state database accepts writes.", registry=r
        )

    def set_checks(self, names: Iterable[str]) -> None:
        """Pre-create per-check series at zero and drop those of removed checks."""
        self.per_check.set_checks(names)
        self.check_failures.keep(set(self.per_check.names))
        self.checks_configured.set(len(self.per_check.names))

    def observe(
        self,
        check: str,
        site: str | None,
        obs: Observation,
        state: CheckState,
        changed: bool = True,
    ) -> None:
        """Record one probe's outcome (hot path: state gauges only when the state changed)."""
        pc = self.per_check
        i = pc.index.get(check)
        if i is None:
            pc.set_checks([*pc.names, check])
            i = pc.index[check]
        pc.probes[i] += 1.0
        pc.duration[i] = obs.duration_s
        if changed:
            pc.up[i] = 1.0 if state.up else 0.0
            pc.severity[i] = float(state.hard.rank)
            pc.flapping[i] = 1.0 if state.flapping else 0.0
        if not obs.ok:
            self.check_failures.inc(check, obs.failure.value)
        values = obs.values
        if site is not None and "expected" in values and "registered" in values:
            self.phones_registered.labels(site).set(float(values["registered"]))
            self.phones_expected.labels(site).set(float(values["expected"]))
        oids = values.get("oids")
        if isinstance(oids, dict):
            for oid, val in oids.items():
                if isinstance(val, int | float) and not isinstance(val, bool):
                    self.snmp_value.labels(check, str(oid)).set(float(val))


FAILURE_CLASSES = tuple(f.value for f in FailureClass)
