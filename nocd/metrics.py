"""Every Prometheus metric nocd exports, defined in one place on an injected registry.

Label values are bounded: check names (from config), enum values, site names. Per-check
children are cached so the per-probe path does no label lookups.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from nocd.model import FailureClass, Observation, Severity
from nocd.state import CheckState, TransitionKind

_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics."""

    def __init__(self, registry: CollectorRegistry, version: str = "0") -> None:
        self.registry = registry
        r = registry
        Info("nocd_build", "nocd version.", registry=r).info({"version": version})
        self.check_up = Gauge(
            "nocd_check_up", "1 when the check's hard state is OK, else 0.", ["check"], registry=r
        )
        self.check_severity = Gauge(
            "nocd_check_severity",
            "Hard severity of the check: 0 ok, 1 unknown, 2 low, 3 degraded, 4 critical.",
            ["check"],
            registry=r,
        )
        self.check_duration = Gauge(
            "nocd_check_duration_seconds", "Duration of the last probe.", ["check"], registry=r
        )
        self.check_probes = Counter(
            "nocd_check_probes_total", "Probes run per check.", ["check"], registry=r
        )
        # Failures are created on first use: checks × failure classes would be 20 series per
        # check, too many at 50,000 checks; `nocd_check_probes_total` is pre-created at zero.
        self.check_failures = Counter(
            "nocd_check_failures_total",
            "Failed probes per check and failure class.",
            ["check", "failure"],
            registry=r,
        )
        self.check_flapping = Gauge(
            "nocd_check_flapping", "1 while the check is flapping.", ["check"], registry=r
        )
        self.transitions = Counter(
            "nocd_state_transitions_total", "Hard state transitions.", ["kind"], registry=r
        )
        for kind in TransitionKind:
            self.transitions.labels(kind.value)
        self.lateness = Histogram(
            "nocd_scheduler_lateness_seconds",
            "How late probes start compared to their due time.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
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
        self._children: dict[str, tuple[Gauge, Gauge, Gauge, Counter, Gauge]] = {}

    def set_checks(self, names: Iterable[str]) -> None:
        """Pre-create per-check series at zero and drop those of removed checks."""
        wanted = set(names)
        for name in list(self._children):
            if name not in wanted:
                del self._children[name]
                for m in (
                    self.check_up,
                    self.check_severity,
                    self.check_duration,
                    self.check_probes,
                    self.check_flapping,
                ):
                    try:
                        m.remove(name)
                    except KeyError:
                        pass
        for name in wanted:
            if name not in self._children:
                up = self.check_up.labels(name)
                up.set(1)
                self._children[name] = (
                    up,
                    self.check_severity.labels(name),
                    self.check_duration.labels(name),
                    self.check_probes.labels(name),
                    self.check_flapping.labels(name),
                )
        self.checks_configured.set(len(wanted))

    def observe(
        self,
        check: str,
        site: str | None,
        obs: Observation,
        state: CheckState,
        changed: bool = True,
    ) -> None:
        """Record one probe's outcome (hot path: state gauges only when the state changed)."""
        kids = self._children.get(check)
        if kids is None:
            self.set_checks([*self._children, check])
            kids = self._children[check]
        up, sev, dur, probes, flap = kids
        probes.inc()
        dur.set(obs.duration_s)
        if changed:
            up.set(1 if state.up else 0)
            sev.set(state.hard.rank)
            flap.set(1 if state.flapping else 0)
        if not obs.ok:
            self.check_failures.labels(check, obs.failure.value).inc()
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
