"""Status writes on a real API server: the operator replans every loop but writes a policy's status
only when something other than the clock changed it, at least every --status-refresh-seconds (the
heartbeat), and at once on a spec change. Seen from outside as the policy's resourceVersion."""

from __future__ import annotations

import time

import pytest

import kube_helpers as kh
from kube_helpers import SimClock, wait_for
from mesp_operator.status import parse_time, refresh_interval

pytestmark = pytest.mark.integration

SPEED = 20.0      # simulated seconds per real second: a plan minute every 3 s, six loops a minute
REFRESH = 600.0   # the operator's default --status-refresh-seconds


def _written(metrics) -> tuple[float, float]:
    get = metrics.registry.get_sample_value
    return (get("mesp_status_writes_total", {"result": "written"}) or 0.0,
            get("mesp_status_writes_total", {"result": "unchanged"}) or 0.0)


def _changes(versions: dict) -> list:
    """What changed from each version of a policy to the next (for failure messages)."""
    bodies = list(versions.values())
    return [{k: (a.get(part, {}).get(k), b.get(part, {}).get(k)) for part in ("metadata", "status")
             for k in set(a.get(part, {})) | set(b.get(part, {})) if a.get(part, {}).get(k) != b.get(part, {}).get(k)
             and k not in ("resourceVersion", "managedFields")} for a, b in zip(bodies, bodies[1:])]


def test_a_steady_status_is_written_at_its_heartbeat_and_at_once_on_a_spec_change(
        admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-status")
    kh.create_knative_service(admin_client, ns, "steady-svc")
    # Floor and cap at 2: every plan is all 2s whatever the forecast, so only time moves it. Sized by a
    # quantile, not by the floor stage, whose choice is renewed (news) at the policy's reselect boundaries.
    kh.create_policy(admin_client, ns, "pinned", {"service": "steady-svc", "mode": "Active", "actuation": "Revision",
                                                  "capacityPerInstance": 100, "minScale": 2, "maxScale": 2,
                                                  "quantile": 0.9, "horizonMinutes": 30})
    # Beside it, a plan from the real day's forecast (nothing written to the Service).
    kh.create_policy(admin_client, ns, "forecast", {"service": "steady-svc", "mode": "ForecastOnly",
                                                    "capacityPerInstance": 100, "horizonMinutes": 30})
    clock = SimClock(start=history.peak_time("a") - 120 * 60, speed=SPEED)
    metrics = run_operator(ns, clock=clock, status_refresh_seconds=REFRESH)

    def loops() -> float:
        return metrics.registry.get_sample_value("mesp_reconcile_loops_total") or 0.0

    def pinned() -> dict:
        return kh.get_policy(admin_client, ns, "pinned")

    wait_for(lambda: pinned().get("status", {}).get("appliedMinScale") == 2
             and kh.status(admin_client, ns, "forecast").get("planSource") == "fresh", 60, message="both planned")
    # The first writes (finalizer, original-value record, first statuses) reach the watch cache.
    settled = loops() + 2
    wait_for(lambda: loops() >= settled, 30, message="two more loops")

    before = pinned()
    uid, rv, status = before["metadata"]["uid"], before["metadata"]["resourceVersion"], before["status"]
    assert status["plan"] == [2] * 30 and status["desiredMinScale"] == 2
    due = parse_time(status["lastUpdate"]) + refresh_interval(uid, REFRESH)  # its heartbeat, simulated time
    watched_from, loops_before, (written_before, unchanged_before) = clock(), loops(), _written(metrics)
    seen = {rv: before}
    while clock() < due - 60:  # up to a simulated minute before the heartbeat
        p = pinned()
        seen.setdefault(p["metadata"]["resourceVersion"], p)
        time.sleep(0.2)
    steady_loops = loops() - loops_before
    written, unchanged = (a - b for a, b in zip(_written(metrics), (written_before, unchanged_before)))
    assert clock() - watched_from >= 3 * 60 and steady_loops >= 5, (clock() - watched_from, steady_loops)
    assert set(seen) == {rv}, f"the pinned policy was written while only the clock moved: {_changes(seen)}"
    # Both policies were replanned every loop; the real forecast's status at most once per plan
    # minute (when its plan said something new), the pinned one not at all.
    assert written + unchanged >= 2 * steady_loops - 2
    assert written * 4 <= written + unchanged, (written, unchanged, steady_loops)

    # The heartbeat: written again once due, saying the same from a later start.
    after = wait_for(lambda: (p := pinned())["metadata"]["resourceVersion"] != rv and p,
                     (due - clock()) / SPEED + 20, message="the heartbeat write")
    beat = parse_time(after["status"]["lastUpdate"])
    assert due - 1 <= beat <= due + 300, (beat - due)  # lastUpdate has whole seconds
    assert after["status"]["plan"] == [2] * 30 and after["status"]["planStart"] > status["planStart"]
    def kept(conditions):  # Ready's message is the plan's reasons, which name minutes relative to now
        return [(c["type"], c["status"], c["reason"], c["lastTransitionTime"]) for c in conditions]

    assert kept(after["status"]["conditions"]) == kept(status["conditions"])

    # A spec change is news: written in the next loops, long before the next heartbeat.
    generation = kh.patch_policy_spec(admin_client, ns, "pinned", {"minScale": 3, "maxScale": 3})["metadata"]["generation"]
    changed = wait_for(lambda: (s := pinned()["status"]).get("observedGeneration") == generation
                       and s.get("appliedMinScale") == 3 and s, 30, message="the new spec's status")
    assert changed["plan"] == [3] * 30
    assert parse_time(changed["lastUpdate"]) < beat + refresh_interval(uid, REFRESH) / 2
    assert kh.revision_min_scale(admin_client, ns, "steady-svc-00001") == "3"
