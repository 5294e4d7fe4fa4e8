"""The operator's own Prometheus metrics, in a registry of its own (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

POLICY = ("namespace", "policy")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.forecast_next = Gauge("mesp_forecast_next_requests_per_minute",
                                   "Forecast invocations in the next minute at the policy's sizing quantile "
                                   "(status.sizingQuantile)", POLICY, registry=r)
        self.forecast_peak = Gauge("mesp_forecast_peak_requests_per_minute",
                                   "Highest forecast per-minute invocations over the policy's horizon", POLICY, registry=r)
        self.planned = Gauge("mesp_planned_min_scale", "Min-scale the plan asks for now", POLICY, registry=r)
        self.applied = Gauge("mesp_applied_min_scale", "Min-scale currently written by MESP (absent: none)",
                             POLICY, registry=r)
        self.floor = Gauge("mesp_user_min_scale", "The user's own min-scale floor", POLICY, registry=r)
        self.expert = Gauge("mesp_policy_expert_info", "Cluster and expert the router chose (value 1)",
                            POLICY + ("cluster", "expert"), registry=r)
        self.model = Gauge("mesp_model_info", "Loaded model artifact (value 1)",
                           ("path", "format_version", "clusters"), registry=r)
        self.metrics_available = Gauge("mesp_metrics_available",
                                       "1 when the last Prometheus fetch succeeded", registry=r)
        self.policies = Gauge("mesp_policies", "Policies by state after the last loop", ("state",), registry=r)
        self.loop_duration = Histogram("mesp_reconcile_duration_seconds", "Duration of one loop over all policies",
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120), registry=r)
        self.loop_phase = Gauge("mesp_reconcile_phase_seconds",
                                "Seconds of the last loop's phases (see LoopReport.phases; *_threads: summed over "
                                "the write threads)", ("phase",), registry=r)
        self.loops = Counter("mesp_reconcile_loops", "Completed reconcile loops", registry=r)
        self.errors = Counter("mesp_errors", "Errors by kind (see mesp_operator.errors.classify)", ("kind",), registry=r)
        self.status_writes = Counter("mesp_status_writes", "MespPolicy statuses per loop: written, or unchanged "
                                     "(nothing but time moved since the last write, within --status-refresh-seconds)",
                                     ("result",), registry=r)
        self.actuations = Counter("mesp_actuations", "Min-scale writes on Knative objects", ("target",), registry=r)
        self._known: dict[tuple[str, str], tuple[str, str] | None] = {}

    def set_expert(self, namespace: str, policy: str, cluster: str, expert: str) -> None:
        old = self._known.get((namespace, policy))
        if old is not None and old != (cluster, expert):
            self.expert.remove(namespace, policy, *old)
        self._known[(namespace, policy)] = (cluster, expert)
        self.expert.labels(namespace, policy, cluster, expert).set(1)

    def set_policy(self, key: tuple[str, str], planned: int | None, applied: int | None, floor: int) -> None:
        if planned is not None:
            self.planned.labels(*key).set(planned)
        if applied is not None:
            self.applied.labels(*key).set(applied)
        self.floor.labels(*key).set(floor)

    def forget_policy(self, namespace: str, policy: str) -> None:
        for gauge in (self.forecast_next, self.forecast_peak, self.planned, self.applied, self.floor):
            try:
                gauge.remove(namespace, policy)
            except KeyError:
                pass
        old = self._known.pop((namespace, policy), None)
        if old is not None:
            try:
                self.expert.remove(namespace, policy, *old)
            except KeyError:
                pass

    def known_policies(self) -> set[tuple[str, str]]:
        return set(self._known)

    def serve(self, port: int, address: str = "0.0.0.0"):
        """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
        return start_http_server(port, addr=address, registry=self.registry)
