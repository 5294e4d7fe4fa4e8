"""`actuation: Auto` on Knative 1.20 (serving v0.47.0), the release before Knative carries a
Revision's min-scale to its PodAutoscaler: annotating the Revision would do nothing there, so MESP
must take the Template path, and Knative scales the Revision that path creates."""

from __future__ import annotations

import time

import pytest

from knative_helpers import PA, REPLAYED_1_20, TIMINGS, USER_FLOOR, Kn, policy, start_operator, wait_applied
import kube_helpers as kh  # tests/integration's, put on sys.path by knative_helpers

pytestmark = pytest.mark.knative


def test_auto_takes_the_template_path_on_knative_1_20(knative_1_20):
    kube, replay = knative_1_20.kube, knative_1_20.replay
    ns, name = REPLAYED_1_20
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: str(USER_FLOOR)})
    first = kn.latest()
    kn.wait_knative_at(first, USER_FLOOR)
    assert kh.custom(kube).get_cluster_custom_object(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions",
        "revisions.serving.knative.dev")["metadata"]["labels"]["app.kubernetes.io/version"] == "1.20.0"

    # What this Knative does with a min-scale written on the Revision: nothing reaches the PA.
    kh.custom(kube).patch_namespaced_custom_object(*kh.KN, ns, "revisions", first,
                                                   {"metadata": {"annotations": {kh.MIN_SCALE: "5"}}})
    time.sleep(5)
    assert kn.min_scale(PA, "podautoscalers", first) == str(USER_FLOOR)
    assert kn.scale(first) == (USER_FLOOR, USER_FLOOR)
    kh.custom(kube).patch_namespaced_custom_object(*kh.KN, ns, "revisions", first,
                                                   {"metadata": {"annotations": {kh.MIN_SCALE: str(USER_FLOOR)}}})

    kh.create_policy(kube, ns, name, policy(replay, service=name))
    log = start_operator(knative_1_20.start_operator, ns)
    floor = wait_applied(kube, ns, name, log)
    st = kh.status(kube, ns, name)
    assert st["actuation"] == "Template", st
    assert kh.template_min_scale(kube, ns, name) == str(floor)
    kh.wait_for(lambda: kn.latest() not in (None, first), 60, message="the Template path's new Revision Ready")
    kn.wait_knative_at(kn.latest(), floor)
    lead = round((replay.peak_at - time.time()) / 60, 1)
    TIMINGS["knative_1_20_template_ready_lead_replayed_peak_min"] = lead
    assert lead > 0, "the floor's pods were Ready only after the replayed peak"
