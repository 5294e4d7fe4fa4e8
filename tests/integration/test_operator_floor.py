"""A model with a floor stage on a real API server with a real, backfilled Prometheus: a policy sized by
coldStartCost is planned from the floor policy the stage chose for its Service (named in status), the
Revision gets that floor within the user's bounds, and a quantile override bypasses the stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import kube_helpers as kh
from kube_helpers import SimClock, wait_for

pytestmark = pytest.mark.integration

TRACE = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure2019" / \
    "invocations_per_function_md.sample.csv.gz"
CAPACITY = 50
MAX_SCALE = 20


class _RecordingFloors:
    """The loaded model, recording what each floor_plan call returned (plans per row, floor names)."""

    def __init__(self, model):
        self._model, self.results = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def floor_plan(self, contexts, **kwargs):
        result = self._model.floor_plan(contexts, **kwargs)
        self.results.append((len(contexts[0]), result.plan.tolist(), list(result.floors)))
        return result


@pytest.fixture(scope="module")
def floor_model(tmp_path_factory):
    """The packaged model with a small floor stage added from the real sample (its own split only)."""
    import torch

    from mesp_core.data.reader import read_invocations
    from mesp_core.forecasting.model import default_model_path
    from mesp_core.offline.floor_training import FloorConfig, add_floor_stage
    from mesp_operator.main import load_model
    from mesp_operator.settings import OperatorSettings

    assert TRACE.is_file(), f"real trace sample missing: {TRACE}"
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models") / "with-floor"
    add_floor_stage(default_model_path(), read_invocations([TRACE]), out,
                    FloorConfig(origins=3000, epochs=1, hidden=32, max_val_functions=40, costs=(1.0, 8.0, 64.0)),
                    progress=False)
    model, description = load_model(OperatorSettings(model_path=out))
    assert model.floor is not None
    return _RecordingFloors(model), description


def test_a_cost_sized_policy_is_planned_from_the_learned_floor(admin_client, make_namespace, run_operator, history,
                                                               floor_model):
    ns = make_namespace("it-floor")
    kh.create_knative_service(admin_client, ns, "floor-svc")
    undamped = {"capacityPerInstance": CAPACITY, "horizonMinutes": 30, "maxScale": MAX_SCALE,
                "scaleDown": {"cooldownMinutes": 0, "hysteresis": 0}}
    kh.create_policy(admin_client, ns, "learned", {**undamped, "service": "floor-svc", "mode": "Active",
                                                   "actuation": "Revision", "coldStartCost": 8})
    kh.create_policy(admin_client, ns, "expert", {**undamped, "service": "floor-svc", "mode": "ForecastOnly",
                                                  "coldStartCost": 8, "quantile": 0.9})
    model, description = floor_model
    clock = SimClock(start=history.peak_time("a") - 40 * 60, speed=60)
    run_operator(ns, clock=clock, loaded=(model, description))

    def fresh(name):
        s = kh.status(admin_client, ns, name)
        return s if s.get("planSource") == "fresh" and s.get("plan") else None

    learned = wait_for(lambda: fresh("learned"), 60, message="the learned policy planned")
    expert = wait_for(lambda: fresh("expert"), 60, message="the expert policy planned")
    names = {c.name for c in model.floor.candidates}
    assert learned["learnedFloor"] in names
    assert learned["sizing"] == f"coldStartCost 8 (learned floor: {learned['learnedFloor']})"
    assert expert.get("learnedFloor") is None and expert["sizing"] == "quantile 0.9 (override)"
    # Only the cost-sized policy reached the floor stage, one row a call, with the operator's full
    # context (the stage scores its candidates on the last 240 minutes, after an hour of history).
    assert model.results and all(len(plans) == 1 for _, plans, _ in model.results)
    assert min(width for width, _, _ in model.results) >= 240 + 60

    # Undamped, each fresh plan is one the floor stage returned, within [0, maxScale]; the Revision
    # carries its first minute.
    seen = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and seen < 3:
        s = fresh("learned")
        returned = [np.clip(plans[0][:30], 0, MAX_SCALE).tolist() for _, plans, floors in list(model.results)
                    if s and floors[0] == s["learnedFloor"]]
        if s and s["plan"] in returned:
            seen += 1
        time.sleep(0.5)
    assert seen >= 3, "the learned policy's plans are not the floor stage's"
    applied = wait_for(lambda: [kh.status(admin_client, ns, "learned").get("appliedMinScale")] if
                       kh.status(admin_client, ns, "learned").get("appliedMinScale") is not None else None, 30,
                       message="the floor applied")[0]
    assert 0 <= applied <= MAX_SCALE and kh.revision_min_scale(admin_client, ns, "floor-svc-00001") == str(applied)
