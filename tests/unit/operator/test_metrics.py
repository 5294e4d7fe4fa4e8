"""The operator's own metrics: one router-choice series per policy, and nothing left of a deleted one."""

from __future__ import annotations

from mesp_operator.metrics import OperatorMetrics


def _series(metrics: OperatorMetrics, name: str) -> list[dict]:
    return [s.labels for m in metrics.registry.collect() for s in m.samples if s.name == name]


def test_a_new_expert_replaces_the_policys_old_series():
    metrics = OperatorMetrics()
    metrics.set_expert("ns", "p", "2", "dlinear")
    metrics.set_expert("ns", "p", "5", "nbeats")
    metrics.set_expert("ns", "q", "2", "dlinear")
    assert _series(metrics, "mesp_policy_expert_info") == [
        {"namespace": "ns", "policy": "p", "cluster": "5", "expert": "nbeats"},
        {"namespace": "ns", "policy": "q", "cluster": "2", "expert": "dlinear"}]
    assert metrics.known_policies() == {("ns", "p"), ("ns", "q")}


def test_a_forgotten_policy_leaves_no_series():
    metrics = OperatorMetrics()
    metrics.set_expert("ns", "p", "2", "dlinear")
    for gauge in (metrics.forecast_next, metrics.planned, metrics.applied, metrics.floor):
        gauge.labels("ns", "p").set(3)
    metrics.forget_policy("ns", "p")
    metrics.forget_policy("ns", "never-seen")  # forgetting twice or unknown policies is harmless
    for name in ("mesp_policy_expert_info", "mesp_forecast_next_requests_per_minute", "mesp_planned_min_scale",
                 "mesp_applied_min_scale", "mesp_user_min_scale"):
        assert _series(metrics, name) == [], name
    assert metrics.known_policies() == set()
