"""The metric source against a real Prometheus holding real trace rows (backfilled by promtool)."""

from __future__ import annotations

import numpy as np
import pytest

import kube_helpers as kh
from mesp_operator.errors import MetricsError, PolicyError
from mesp_operator.prometheus import DURATION_REFRESH_SECONDS, PrometheusSource

pytestmark = pytest.mark.integration


def expected_window(history, row: str, end: int, minutes: int) -> np.ndarray:
    counts = history.counts(row)
    last = (end - history.start) // 60 - 1  # index of the minute ending at `end`
    return counts[last - minutes + 1: last + 1]


@pytest.mark.parametrize("preset,target", [("knative-legacy", ("it-presets", "legacy-svc")),
                                           ("knative-otel", ("it-presets", "otel-svc"))])
def test_presets_return_the_real_per_minute_counts(control_plane, history, preset, target):
    source = PrometheusSource(control_plane.prometheus_url, timeout=5, preset=preset)
    now = history.peak_time("a") + 30
    result = source.fetch([target], {}, now=now, window_minutes=240)
    assert not result.errors, result.errors
    got = result.series[target]
    want = expected_window(history, "a", result.end, 240)
    assert got.shape == (240,)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0.05)
    assert want.max() > 300  # the window really contains the peak


def test_incremental_fetch_matches_a_fresh_one(control_plane, history):
    target = ("it-presets", "legacy-svc")
    cached = PrometheusSource(control_plane.prometheus_url, timeout=5, preset="knative-legacy")
    start = history.peak_time("a") - 3600
    for step in range(0, 20 * 60, 180):  # twenty minutes of loops, three minutes apart
        result = cached.fetch([target], {}, now=start + step, window_minutes=120)
    fresh = PrometheusSource(control_plane.prometheus_url, timeout=5, preset="knative-legacy").fetch(
        [target], {}, now=start + step, window_minutes=120)
    np.testing.assert_allclose(result.series[target], fresh.series[target])
    np.testing.assert_allclose(result.series[target], expected_window(history, "a", result.end, 120),
                               rtol=1e-3, atol=0.05)


def test_unknown_service_is_zeros_and_bad_override_is_a_policy_error(control_plane, history):
    source = PrometheusSource(control_plane.prometheus_url, timeout=5, preset="knative-legacy")
    now = history.peak_time("a")
    result = source.fetch([("it-presets", "no-such-svc")],
                          {("it-presets", "broken"): "sum(rate(revision_request_count[1m]"},
                          now=now, window_minutes=60)
    assert not result.series[("it-presets", "no-such-svc")].any()
    assert isinstance(result.errors[("it-presets", "broken")], PolicyError)


def test_unreachable_prometheus_is_a_metrics_error(history):
    from kube_helpers import control_plane_module

    port = control_plane_module.free_port()  # nothing listens there
    source = PrometheusSource(f"http://127.0.0.1:{port}", timeout=1)
    result = source.fetch([("ns", "svc")], {}, now=history.end, window_minutes=60)
    error = result.errors[("ns", "svc")]
    assert isinstance(error, MetricsError) and error.reason == "PrometheusUnavailable"


@pytest.mark.parametrize("preset,target", [("knative-legacy", ("it-presets", "legacy-svc")),
                                           ("knative-otel", ("it-presets", "otel-svc"))])
def test_mean_request_duration_from_the_latency_histogram(control_plane, history, preset, target):
    source = PrometheusSource(control_plane.prometheus_url, timeout=5, preset=preset)
    now = history.peak_time("a")
    silent = ("it-presets", "no-such-svc")
    result = source.mean_durations([target, silent], now=now)
    assert result.error is None
    assert result.durations_ms[target] == pytest.approx(kh.DURATIONS_MS[target], rel=1e-3)
    assert silent not in result.durations_ms  # no requests measured: absent, not 0 or NaN
    # Within the refresh interval the figure comes from memory; a Prometheus that has gone away
    # afterwards is reported, and the last known figures stay usable.
    assert source.mean_durations([target], now=now + 60).durations_ms == {target: result.durations_ms[target]}
    prometheus_url = source.client.url
    source.client.url = f"http://127.0.0.1:{kh.control_plane_module.free_port()}"  # nothing listens there
    later = source.mean_durations([target], now=now + DURATION_REFRESH_SECONDS + 60)
    assert isinstance(later.error, MetricsError) and later.error.reason == "PrometheusUnavailable"
    assert later.durations_ms == {target: result.durations_ms[target]}
    # Two hours after the history ends nothing is measured any more: the last figure stays, and a
    # source that never measured the Service has none.
    source.client.url = prometheus_url
    quiet = source.mean_durations([target], now=history.end + 2 * 3600)
    assert quiet.error is None and quiet.durations_ms == {target: result.durations_ms[target]}
    fresh = PrometheusSource(control_plane.prometheus_url, timeout=5, preset=preset)
    assert fresh.mean_durations([target], now=history.end + 2 * 3600).durations_ms == {}


def test_auto_reads_the_family_prometheus_holds(control_plane, history):
    """This Prometheus holds two families (queue-proxy's OpenTelemetry series for otel-svc, the
    legacy counter for the rest): auto takes the newer and reads the real counts through it."""
    source = PrometheusSource(control_plane.prometheus_url, timeout=5)  # auto, the default
    target = ("it-presets", "otel-svc")
    result = source.fetch([target], {}, now=history.peak_time("a") + 30, window_minutes=240)
    assert not result.errors, result.errors
    assert source.preset_name == "knative-otel" and result.preset == "preset knative-otel, chosen by auto"
    np.testing.assert_allclose(result.series[target], expected_window(history, "a", result.end, 240),
                               rtol=1e-3, atol=0.05)
    # A Service without a series while the family exists is idle: zeros, no error.
    idle = source.fetch([("it-presets", "no-such-svc")], {}, now=history.peak_time("a") + 30, window_minutes=240)
    assert not idle.errors and not idle.series[("it-presets", "no-such-svc")].any()


def test_a_family_prometheus_does_not_hold_is_reported_by_name(control_plane, history):
    """knative-otel-activator's series (kn_service_name on the counter itself) are not in this
    Prometheus; before the history starts no family is. Both are errors naming the metric, never
    a day of zeros forecast as an idle Service."""
    target = ("it-presets", "legacy-svc")
    wrong = PrometheusSource(control_plane.prometheus_url, timeout=5, preset="knative-otel-activator")
    error = wrong.fetch([target], {}, now=history.peak_time("a"), window_minutes=240).errors[target]
    assert isinstance(error, MetricsError) and error.reason == "MetricMissing"
    assert 'no kn_serving_invocation_duration_seconds_count{kn_service_name!=""} series' in str(error)
    before = PrometheusSource(control_plane.prometheus_url, timeout=5)
    error = before.fetch([target], {}, now=history.start - 3600, window_minutes=240).errors[target]
    assert error.reason == "MetricMissing" and "revision_request_count" in str(error)
    assert before.preset_name is None


def test_the_operator_reports_a_missing_metric_and_keeps_the_users_floor(
        admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-presets")
    kh.create_knative_service(admin_client, ns, "legacy-svc", annotations={kh.MIN_SCALE: "2"})
    kh.create_policy(admin_client, ns, "wrong-preset", {"service": "legacy-svc", "mode": "Active",
                                                        "actuation": "Revision", "capacityPerInstance": 50})
    clock = kh.SimClock(start=history.peak_time("a") - 20 * 60, speed=60)
    run_operator(ns, clock=clock, metrics_preset="knative-otel-activator")

    def missing():
        condition = kh.condition(admin_client, ns, "wrong-preset", "MetricsAvailable") or {}
        return condition if condition.get("reason") == "MetricMissing" else None

    condition = kh.wait_for(missing, 60, message="MetricsAvailable=False, MetricMissing")
    assert condition["status"] == "False"
    assert "kn_serving_invocation_duration_seconds_count" in condition["message"]
    clock.sleep_until(clock() + 5 * 60)  # several loops: still the user's floor, nothing forecast
    status = kh.status(admin_client, ns, "wrong-preset")
    assert status.get("planSource") == "floor", status
    assert kh.revision_min_scale(admin_client, ns, "legacy-svc-00001") == "2"
