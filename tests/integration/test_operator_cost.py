"""coldStartCost on a real API server with a real, backfilled Prometheus: a dearer cold start never
plans a lower min-scale on the same replayed traffic, the sizing used is in status, and a bad cost
that reached the operator (an older CRD let it through) is a status condition, not a crash.

These run the packaged model without its floor stage, as every model trained before it: the cost
then sizes at the experts' quantile C/(1+C). The floor stage's own path is test_operator_floor.py."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import kube_helpers as kh
from kube_helpers import SimClock, wait_for

pytestmark = pytest.mark.integration

CRD_NAME = "mesppolicies.mesp.dev"
CAPACITY = 50  # invocations per minute per instance in these policies


@pytest.fixture(scope="module")
def experts_only(model):
    """The packaged model as a model without a floor stage (its experts are shared, not copied)."""
    import copy

    loaded, description = model
    older = copy.copy(loaded)
    older.floor = None
    return older, f"{description} (experts only)"


def _same_loop(admin_client, ns: str, names: tuple[str, ...]) -> dict | None:
    """The statuses of `names` when they hold fresh plans from the same loop (same planStart), else None."""
    statuses = {name: kh.status(admin_client, ns, name) for name in names}
    starts = {s.get("planStart") for s in statuses.values()}
    if len(starts) != 1 or None in starts or any(s.get("planSource") != "fresh" for s in statuses.values()):
        return None
    return statuses


def test_a_higher_cold_start_cost_never_plans_a_lower_min_scale(admin_client, make_namespace, run_operator, history,
                                                                experts_only):
    ns = make_namespace("it-cost")
    base = {"mode": "Active", "actuation": "Revision", "capacityPerInstance": CAPACITY, "horizonMinutes": 30}
    for svc in ("cost-lo", "cost-hi"):
        kh.create_knative_service(admin_client, ns, svc)
    kh.create_policy(admin_client, ns, "lo", {**base, "service": "cost-lo", "coldStartCost": 1})
    kh.create_policy(admin_client, ns, "hi", {**base, "service": "cost-hi", "coldStartCost": 100})
    # Beside them, plans only: the operator's default cost and an expert's quantile override.
    kh.create_policy(admin_client, ns, "default", {"service": "cost-hi", "mode": "ForecastOnly",
                                                   "capacityPerInstance": CAPACITY, "horizonMinutes": 30})
    kh.create_policy(admin_client, ns, "expert", {"service": "cost-hi", "mode": "ForecastOnly", "quantile": 0.6,
                                                  "capacityPerInstance": CAPACITY, "horizonMinutes": 30})
    peak_at = history.peak_time("a")
    clock = SimClock(start=peak_at - 40 * 60, speed=60)
    run_operator(ns, clock=clock, cold_start_cost=4.0, loaded=experts_only)

    wait_for(lambda: _same_loop(admin_client, ns, ("lo", "hi", "default", "expert")), 60, message="first plans")
    sizing = {name: kh.status(admin_client, ns, name)["sizing"] for name in ("lo", "hi", "default", "expert")}
    assert sizing == {"lo": "coldStartCost 1 (q0.500)", "hi": "coldStartCost 100 (q0.990)",
                      "default": "coldStartCost 4 (q0.800, operator default)", "expert": "quantile 0.6 (override)"}

    compared, higher = 0, 0
    while clock() < peak_at + 20 * 60:  # through the ramp and the peak
        loop = _same_loop(admin_client, ns, ("lo", "hi"))
        if loop is None:
            time.sleep(0.05)
            continue
        lo, hi = np.array(loop["lo"]["plan"]), np.array(loop["hi"]["plan"])
        assert (hi >= lo).all(), f"planStart {loop['lo']['planStart']}: cost 100 plans {hi}, cost 1 plans {lo}"
        compared += 1
        higher += int(hi.sum() > lo.sum())
        time.sleep(0.5)
    assert compared >= 10 and higher >= compared // 2, (compared, higher)  # loops are slower on a busy machine
    # What is written follows the plans: the dearer policy's Revision carries the higher floor.
    lo_applied = kh.status(admin_client, ns, "lo")["appliedMinScale"]
    hi_applied = kh.status(admin_client, ns, "hi")["appliedMinScale"]
    assert hi_applied >= lo_applied >= 1
    assert kh.revision_min_scale(admin_client, ns, "cost-hi-00001") == str(hi_applied)


_COST_PATH = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/coldStartCost"


def _cold_start_cost_schema(api: client.ApiextensionsV1Api, schema: dict) -> dict:
    """Replace spec.coldStartCost's schema in the MespPolicy CRD (a JSON patch); return the one it had."""
    crd = json.loads(api.read_custom_resource_definition(CRD_NAME, _preload_content=False).data)
    (version,) = crd["spec"]["versions"]
    old = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["coldStartCost"]
    api.patch_custom_resource_definition(CRD_NAME, [{"op": "replace", "path": _COST_PATH, "value": schema}])
    return old


def _accepted(admin_client, ns: str, spec: dict) -> bool:
    try:
        kh.custom(admin_client).create_namespaced_custom_object(*kh.MESP, ns, "mesppolicies", {
            "apiVersion": "mesp.dev/v1alpha1", "kind": "MespPolicy", "metadata": {"name": "probe", "namespace": ns},
            "spec": spec}, dry_run="All")
        return True
    except ApiException as exc:
        if exc.status != 422:
            raise
        return False


BAD_COSTS = {"zero": 0, "negative": -2, "text": "high"}


def test_a_bad_cold_start_cost_is_a_condition_and_the_operator_keeps_working(
        admin_client, make_namespace, run_operator, history, experts_only):
    ns = make_namespace("it-bad-cost")
    kh.create_knative_service(admin_client, ns, "cost-svc")
    # The CRD refuses each bad cost ...
    for cost in BAD_COSTS.values():
        with pytest.raises(ApiException) as info:
            kh.create_policy(admin_client, ns, "rejected", {"service": "cost-svc", "coldStartCost": cost})
        assert info.value.status == 422 and "coldStartCost" in info.value.body
    # ... but a cluster still on an older, looser CRD (Helm never upgrades crds/) stores them.
    api = client.ApiextensionsV1Api(admin_client)
    strict = _cold_start_cost_schema(api, {"x-kubernetes-int-or-string": True})
    try:
        wait_for(lambda: _accepted(admin_client, ns, {"service": "cost-svc", "coldStartCost": -2}), 30,
                 message="the loosened CRD in effect")
        for name, cost in BAD_COSTS.items():
            kh.create_policy(admin_client, ns, name, {"service": "cost-svc", "mode": "Active", "coldStartCost": cost})
    finally:
        _cold_start_cost_schema(api, strict)
    wait_for(lambda: not _accepted(admin_client, ns, {"service": "cost-svc", "coldStartCost": -2}), 30,
             message="the CRD strict again")
    kh.create_policy(admin_client, ns, "good", {"service": "cost-svc", "mode": "ForecastOnly", "coldStartCost": 20,
                                                "capacityPerInstance": CAPACITY, "horizonMinutes": 15})
    clock = SimClock(start=history.peak_time("b") - 10 * 60, speed=60)
    metrics = run_operator(ns, clock=clock, loaded=experts_only)

    def ready(name):
        return kh.condition(admin_client, ns, name, "Ready") or {}

    wait_for(lambda: ready("good").get("status") == "True", 60, message="the good policy planned")
    expected = {"zero": "spec.coldStartCost must be in (0.0, 1000000.0], got 0",
                "negative": "spec.coldStartCost must be in (0.0, 1000000.0], got -2",
                "text": "spec.coldStartCost must be a number, got 'high'"}
    for name, message in expected.items():
        wait_for(lambda: ready(name).get("reason") == "InvalidSpec", 30, message=f"{name}: InvalidSpec")
        assert ready(name)["status"] == "False" and ready(name)["message"] == message
        assert "InvalidSpec" in kh.event_reasons(admin_client, ns, name)
        assert kh.status(admin_client, ns, name).get("appliedMinScale") is None
    assert kh.revision_min_scale(admin_client, ns, "cost-svc-00001") is None  # nothing written for them
    assert kh.status(admin_client, ns, "good")["sizing"] == "coldStartCost 20 (q0.952)"
    # The loop goes on: more loops complete and the good policy's plan keeps moving with the clock.
    loops = metrics.registry.get_sample_value("mesp_reconcile_loops_total")
    first = kh.status(admin_client, ns, "good")["planStart"]
    wait_for(lambda: kh.status(admin_client, ns, "good")["planStart"] != first, 30, message="a later plan")
    # A loop counts itself once all its writes are done, after the good policy's status was written.
    wait_for(lambda: metrics.registry.get_sample_value("mesp_reconcile_loops_total") > loops, 30,
             message="a later loop completed")
    assert not metrics.registry.get_sample_value("mesp_errors_total", {"kind": "unexpected"})
