"""The reconcile loop on its own: the packaged golden model, a stand-in for Prometheus and an
in-memory API (tests/integration runs the same loop against real servers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kubernetes.client.exceptions import ApiException

import mesp_core
from mesp_operator import knative as kn
from mesp_operator.decisions import model_context_minutes
from mesp_operator.forecast import choice_phase
from mesp_operator.prometheus import DurationResult, FetchResult
from mesp_operator.reconcile import Reconciler
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import PolicyObject, parse_spec

from .fake_cluster import FakeCluster, add_policy, clients

SETTINGS = OperatorSettings()


class _FlakyKnative:
    """Answers the Knative version check from a script: a (supported, why) tuple or an exception."""

    def __init__(self, answers):
        self.answers = list(answers)

    def revision_annotations_supported(self):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_passing_api_error_does_not_switch_auto_actuation(monkeypatch):
    from mesp_operator import reconcile

    knative = _FlakyKnative([ApiException(status=503), (True, "Knative 1.21"), ApiException(status=503)])
    reconciler = Reconciler(SETTINGS, model=None, source=None, knative=knative, store=None)
    try:
        spec = parse_spec({"service": "svc"}, SETTINGS)
        with pytest.raises(ApiException):  # nothing known yet: this write fails and is retried
            reconciler._actuation_for(spec)
        assert reconciler._plans_for_template(spec) is False  # planning goes on meanwhile
        assert reconciler._actuation_for(spec)[0] == "Revision"
        monkeypatch.setattr(reconcile, "SUPPORT_RECHECK_SECONDS", -1.0)  # ask again: 503 this time
        assert reconciler._actuation_for(spec)[0] == "Revision"  # the last answer stands
    finally:
        reconciler.close()


GOLDEN_MODEL = Path(__file__).resolve().parents[3] / "tests" / "golden" / "model_v1"
NOW = 1_767_225_630.0


class _Prometheus:
    """The same per-minute counts for every Service; no request durations measured."""

    def __init__(self, counts: np.ndarray):
        self.counts, self.windows = counts, []

    def fetch(self, targets, overrides, *, now, window_minutes):
        self.windows.append(window_minutes)
        keys = list(targets) + list(overrides)
        return FetchResult(series={k: self.counts[-window_minutes:].copy() for k in keys}, errors={},
                           end=int(now // 60) * 60)

    def mean_durations(self, targets, *, now):
        return DurationResult({})


@pytest.fixture(scope="module")
def golden_model():
    return mesp_core.load_model(GOLDEN_MODEL)


def _loop(cluster: FakeCluster, model, settings: OperatorSettings = SETTINGS) -> Reconciler:
    knative, store = clients(cluster)
    counts = np.random.default_rng(1).poisson(100, 2 * 1440).astype(np.float32)
    return Reconciler(settings, model, _Prometheus(counts), knative, store, clock=lambda: NOW)


def _views(cluster: FakeCluster):
    policies = [PolicyObject.from_body(b) for (plural, _, _), b in cluster.objects.items() if plural == "mesppolicies"]
    services = {(b["metadata"]["namespace"], b["metadata"]["name"]): kn.service_info(b)
                for (plural, _, _), b in cluster.objects.items() if plural == "services"}
    revisions = {(b["metadata"]["namespace"], b["metadata"]["name"]): kn.revision_info(b)
                 for (plural, _, _), b in cluster.objects.items() if plural == "revisions"}
    return policies, services, revisions


def _cluster(policy_spec: dict) -> FakeCluster:
    cluster = FakeCluster()
    cluster.add_service("ns", "fn", {kn.MIN_SCALE: "1"}, "fn-00001")
    cluster.add_revision("ns", "fn-00001", "fn", {kn.MIN_SCALE: "1"})
    add_policy(cluster, "ns", "p", {"service": "fn", "capacityPerInstance": 20, **policy_spec})
    return cluster


def test_a_forecast_only_policy_gets_its_plan_in_status_and_nothing_else_is_written(golden_model):
    cluster = _cluster({"mode": "ForecastOnly", "horizonMinutes": 30})
    reconciler = _loop(cluster, golden_model)
    try:
        report = reconciler.run_once(*_views(cluster))
    finally:
        reconciler.close()
    assert (report.policies, report.planned, report.actuated, report.states) == (1, 1, 0, {"Planned": 1})
    assert reconciler.source.windows == [model_context_minutes(golden_model.manifest)]  # one fetch for the batch
    status = cluster.body("mesppolicies", "ns", "p")["status"]
    assert status["planSource"] == "fresh" and len(status["plan"]) == 30 and status["plan"][0] >= 1
    assert set(status["route"]) == {"cluster", "expert", "description", "distance"}
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Ready": "Planned", "ModelLoaded": "Loaded", "MetricsAvailable": "Fetched", "Actuated": "ForecastOnly"}
    assert status.get("appliedMinScale") is None and status["capacitySource"] == "spec"
    assert cluster.revision_min_scale("ns", "fn-00001") == "1" and cluster.template_min_scale("ns", "fn") == "1"
    assert "annotations" not in cluster.body("mesppolicies", "ns", "p")["metadata"]


def test_an_active_policy_writes_the_revision_and_its_deletion_gives_the_value_back(golden_model):
    cluster = _cluster({"mode": "Active"})
    reconciler = _loop(cluster, golden_model)
    try:
        report = reconciler.run_once(*_views(cluster))
        status = cluster.body("mesppolicies", "ns", "p")["status"]
        assert report.states == {"Actuated": 1} and status["actuation"] == "Revision"
        assert cluster.revision_min_scale("ns", "fn-00001") == str(status["appliedMinScale"]) == str(status["plan"][0])
        assert status["originalMinScale"] == "1" and cluster.template_min_scale("ns", "fn") == "1"
        assert "MinScaleSet" in cluster.event_reasons()

        policies, _, _ = _views(cluster)
        assert reconciler.restore_policy(policies[0]) == "Revision fn-00001: min-scale restored to 1"
        assert cluster.revision_min_scale("ns", "fn-00001") == "1"
    finally:
        reconciler.close()


class _Recording:
    """The real model, recording its runs and every quantile level asked of their forecasts."""

    def __init__(self, model):
        self.model, self.runs, self.levels = model, 0, []
        self.manifest = model.manifest

    def forecast_distribution(self, contexts, horizon, approach):
        self.runs += 1
        distribution = self.model.forecast_distribution(contexts, horizon=horizon, approach=approach)
        quantile = distribution.quantile

        def recorded(q):
            self.levels.append(q)
            return quantile(q)

        distribution.quantile = recorded
        return distribution

    def explain_routes(self, contexts, switched=None):
        return self.model.explain_routes(contexts, switched=switched)


def test_each_policys_cost_reaches_the_model_and_they_share_one_run(golden_model):
    cluster = _cluster({"mode": "ForecastOnly", "horizonMinutes": 30})  # p: no cost, the operator's
    add_policy(cluster, "ns", "dear", {"service": "fn", "capacityPerInstance": 20, "horizonMinutes": 30,
                                       "coldStartCost": 100})
    add_policy(cluster, "ns", "cheap", {"service": "fn", "capacityPerInstance": 20, "horizonMinutes": 30,
                                        "coldStartCost": 0.5})
    add_policy(cluster, "ns", "expert", {"service": "fn", "capacityPerInstance": 20, "horizonMinutes": 30,
                                         "coldStartCost": 100, "quantile": 0.6})
    add_policy(cluster, "ns", "broken", {"service": "fn", "coldStartCost": -1})  # an older CRD let it through
    model = _Recording(golden_model)
    reconciler = _loop(cluster, model, OperatorSettings(cold_start_cost=4.0))
    try:
        report = reconciler.run_once(*_views(cluster))
    finally:
        reconciler.close()
    assert report.planned == 4 and report.states == {"Planned": 4, "InvalidSpec": 1}
    assert model.runs == 1  # same approach and horizon: one model run whatever the costs
    assert sorted(model.levels) == pytest.approx(sorted([4 / 5, 100 / 101, 0.5 / 1.5, 0.6]))
    status = {name: cluster.body("mesppolicies", "ns", name)["status"] for name in ("p", "dear", "cheap", "expert",
                                                                                     "broken")}
    assert status["p"]["sizing"] == "coldStartCost 4 (q0.800, operator default)"
    assert status["dear"]["sizing"] == "coldStartCost 100 (q0.990)"
    assert status["expert"]["sizing"] == "quantile 0.6 (override)"
    # Same traffic, same state: a dearer cold start never plans a lower floor, and here plans a higher one.
    plans = {name: np.array(status[name]["plan"]) for name in ("cheap", "p", "dear")}
    assert (plans["dear"] >= plans["p"]).all() and (plans["p"] >= plans["cheap"]).all()
    assert plans["dear"].sum() > plans["cheap"].sum()
    ready = {c["type"]: c for c in status["broken"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "spec.coldStartCost must be in (0.0, 1000000.0], got -1"
    assert status["broken"].get("sizing") is None


class _FloorRecording:
    """A model with a floor stage, recording each floor_plan call's rows, capacities and cost."""

    def __init__(self, model):
        self.model, self.calls, self.choices = model, [], []
        self.manifest, self.floor = model.manifest, model.floor

    def forecast_distribution(self, contexts, horizon, approach):
        return self.model.forecast_distribution(contexts, horizon=horizon, approach=approach)

    def explain_routes(self, contexts, switched=None):
        return self.model.explain_routes(contexts, switched=switched)

    def floor_choose(self, contexts, **kw):
        self.choices.append(len(contexts))
        return self.model.floor_choose(contexts, **kw)

    def floor_plan(self, contexts, horizon, capacity_per_instance, lead_minutes, cold_start_cost, floors=None):
        self.calls.append((len(contexts), list(np.atleast_1d(capacity_per_instance)), cold_start_cost))
        return self.model.floor_plan(contexts, horizon=horizon, capacity_per_instance=capacity_per_instance,
                                     lead_minutes=lead_minutes, cold_start_cost=cold_start_cost, floors=floors)


def test_a_floor_stage_sets_cost_sized_floors_and_a_quantile_bypasses_it(tiny_floor_model_dir):
    floor_model = mesp_core.load_model(tiny_floor_model_dir)
    # A daily wave of 0..120 invocations/min (0..6 instances of 20/min, 0..12 of 10/min).
    minutes = np.arange(3 * 1440)
    rate = 60.0 * (1.0 + np.sin(2 * np.pi * minutes / 1440.0))
    counts = np.random.default_rng(3).poisson(rate).astype(np.float32)
    undamped = {"mode": "ForecastOnly", "actuation": "Revision", "horizonMinutes": 30, "maxScale": 6,
                "scaleDown": {"cooldownMinutes": 0, "hysteresis": 0}}
    cluster = _cluster({**undamped, "coldStartCost": 8, "minScale": 5})
    add_policy(cluster, "ns", "twin", {**undamped, "service": "fn", "capacityPerInstance": 10, "coldStartCost": 8,
                                       "minScale": 1})
    add_policy(cluster, "ns", "expert", {**undamped, "service": "fn", "capacityPerInstance": 20, "coldStartCost": 8,
                                         "minScale": 1, "quantile": 0.9})
    model = _FloorRecording(floor_model)
    knative, store = clients(cluster)
    reconciler = Reconciler(SETTINGS, model, _Prometheus(counts), knative, store, clock=lambda: NOW)
    try:
        report = reconciler.run_once(*_views(cluster))
        status = {name: cluster.body("mesppolicies", "ns", name)["status"] for name in ("p", "twin", "expert")}
        # The next loop plans with the choices the first one kept (unless a policy's boundary is now).
        chosen_first = list(model.choices)
        clock = NOW + 60.0
        reconciler.clock = lambda: clock
        reconciler.run_once(*_views(cluster))
    finally:
        reconciler.close()
    assert report.planned == 3
    # p and twin share one floor-stage call (same length, lead and cost), each with its own capacity;
    # the quantile override is not asked of the floor stage.
    assert model.calls[0] == (2, [20.0, 10.0], 8.0) and chosen_first == [2]
    every = floor_model.floor.reselect_every
    at_boundary = [(int(clock // 60) - choice_phase(f"uid-{name}", every)) % every == 0 for name in ("p", "twin")]
    assert model.choices[1:] == ([sum(at_boundary)] if any(at_boundary) else [])
    context = counts[-reconciler.context_minutes:][None, :]
    bounded = 0
    for name, capacity, floor in (("p", 20.0, 5), ("twin", 10.0, 1)):
        # The floor the operator chose at the policy's own last reselect boundary (stateless here).
        since = (int(NOW // 60) - choice_phase(f"uid-{name}", every)) % every
        learned = floor_model.floor_plan(context, horizon=30, capacity_per_instance=capacity, lead_minutes=2,
                                         cold_start_cost=8.0, since=since)
        # With no damping, the plan is the floor stage's target within the user's floor and cap.
        wanted = np.clip(learned.plan[0], floor, 6)
        assert status[name]["plan"] == wanted.tolist()
        bounded += int((wanted != learned.plan[0]).any())
        assert status[name]["learnedFloor"] == learned.floors[0]
        assert status[name]["sizing"] == f"coldStartCost 8 (learned floor: {learned.floors[0]})"
    assert bounded == 2  # here the user's floor lifts p's target and the cap lowers twin's
    assert any("learned floor needs" in text for text in status["twin"]["planReasons"])
    # The override sizes from the experts' forecast at its quantile, as MespModel.plan_min_scale does.
    assert status["expert"].get("learnedFloor") is None and status["expert"]["sizing"] == "quantile 0.9 (override)"
    expected = floor_model.plan_min_scale(context, 30, capacity_per_instance=20.0, lead_minutes=2, quantile=0.9,
                                          hold_minutes=2, user_min_scale=1, max_scale=6, cooldown_minutes=0,
                                          scale_down_hysteresis=0)
    assert status["expert"]["plan"] == expected[0].tolist()
