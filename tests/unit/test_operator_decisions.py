"""Pure decisions of the operator: spec validation, template damping, Knative annotation handling,
error classification, context length."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from mesp_operator import knative as kn
from mesp_operator.errors import MetricsError, PolicyError, classify
from mesp_operator.reconcile import (DEFAULT_REQUEST_DURATION_MS, OriginalRecord, PolicyObject, Reconciler,
                                     damp_template_change, model_context_minutes, parse_spec, resolve_capacity)
from mesp_operator.settings import OperatorSettings

SETTINGS = OperatorSettings()


def test_spec_defaults():
    spec = parse_spec({"service": "fn"}, SETTINGS)
    assert (spec.mode, spec.actuation, spec.horizon, spec.lead, spec.quantile, spec.approach) == \
        ("ForecastOnly", "Auto", 60, 2, 0.9, "moe")
    assert spec.template_cooldown == SETTINGS.template_cooldown_minutes
    assert spec.capacity is None and spec.min_scale is None
    assert spec.request_duration_ms is None  # absent: measured from Prometheus, else the default


@pytest.mark.parametrize("spec_capacity,spec_ms,measured_ms,concurrency,target,expected", [
    # The policy's own capacity wins over everything.
    (250.0, 100.0, 50.0, 4, None, (250.0, "spec", None)),
    # Else concurrency x 0.7 x 60,000 / duration, the duration from the spec first ...
    (None, 500.0, 50.0, 4, None, (4 * 0.7 * 60_000 / 500.0, "requestDurationMs", 500.0)),
    # ... then from Prometheus ...
    (None, None, 300.0, 1, None, (0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
    # ... then the default, 1,000 ms.
    (None, None, None, 2, None, (2 * 0.7 * 60_000 / DEFAULT_REQUEST_DURATION_MS, "defaultDuration", 1000.0)),
    # containerConcurrency 0 (unlimited): the autoscaling target, else Knative's soft target of 100.
    (None, None, 300.0, 0, 10, (10 * 0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
    (None, None, 300.0, 0, None, (100 * 0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
])
def test_capacity_comes_from_the_spec_a_measured_duration_or_the_default(
        spec_capacity, spec_ms, measured_ms, concurrency, target, expected):
    capacity, source, duration = resolve_capacity(spec_capacity, spec_ms, measured_ms, concurrency, target)
    assert (source, duration) == expected[1:]
    assert capacity == pytest.approx(expected[0])


@pytest.mark.parametrize("spec,message", [
    ({}, "spec.service must name a Knative Service"),
    ({"service": "fn", "mode": "On"}, "spec.mode must be one of Off, ForecastOnly, Active, got 'On'"),
    ({"service": "fn", "actuation": "Pods"}, "spec.actuation must be one of Auto, Revision, Template"),
    ({"service": "fn", "quantile": 1.0}, "spec.quantile must be in (0.0, 0.999], got 1.0"),
    ({"service": "fn", "quantile": "high"}, "spec.quantile must be a number, got 'high'"),
    ({"service": "fn", "horizonMinutes": 2.5}, "spec.horizonMinutes must be an integer, got 2.5"),
    ({"service": "fn", "minScale": 4, "maxScale": 3}, "spec.minScale (4) must not exceed spec.maxScale (3)"),
    ({"service": "fn", "capacityPerInstance": 0}, "spec.capacityPerInstance must be in (0.0,"),
    ({"service": "fn", "scaleDown": {"cooldownMinutes": -1}}, "spec.scaleDown.cooldownMinutes must be in [0, 1440]"),
    ({"service": "fn", "promql": "  "}, "spec.promql must be a non-empty PromQL string"),
])
def test_bad_specs_are_named_precisely(spec, message):
    with pytest.raises(PolicyError) as info:
        parse_spec(spec, SETTINGS)
    assert str(info.value).startswith(message)


# current, wanted, floor, cap, minutes since change, cooldown, hysteresis -> value written
DAMPING = [
    (1, 5, 1, 50, 0, 10, 2, 7),     # a real raise goes out at once, with headroom
    (1, 5, 1, 6, 0, 10, 2, 6),      # ... never above the cap
    (5, 6, 1, 50, 3, 10, 2, 5),     # a small raise during the cooldown waits
    (5, 6, 1, 50, 12, 10, 2, 8),    # ... and goes out once the cooldown is over
    (8, 3, 1, 50, 4, 10, 2, 8),     # decreases wait for the cooldown
    (8, 7, 1, 50, 40, 10, 2, 8),    # ... and must exceed the hysteresis
    (8, 3, 1, 50, 40, 10, 2, 3),
    (3, 1, 1, 50, 40, 10, 5, 1),    # back to the floor is always allowed after the cooldown
    (4, 0, 2, 50, 40, 10, 0, 2),    # never below the floor
    (4, 4, 1, 50, 0, 10, 2, 4),
    (6, 10, 0, 5, 100, 10, 1, 5),   # the cap dropped below what is set: down to it at once
    (2, 0, 3, 50, 5, 10, 1, 3),     # the floor rose above what is set: up to it, cooldown or not
    (7, 7, 0, 6, 0, 10, 1, 6),
]


@pytest.mark.parametrize("current,wanted,floor,cap,since,cooldown,hysteresis,expected", DAMPING)
def test_template_damping(current, wanted, floor, cap, since, cooldown, hysteresis, expected):
    value, reason = damp_template_change(current, wanted, floor, cap, since, cooldown, hysteresis)
    assert value == expected, reason
    assert floor <= value <= cap


def test_template_raise_headroom_is_a_share_of_the_wanted_value():
    # current, wanted, floor, cap, since, cooldown, hysteresis, headroom
    assert damp_template_change(4, 10, 1, 80, 0, 15, 2, 0.5)[0] == 15     # 10 + 50%
    assert damp_template_change(1, 2, 1, 80, 30, 15, 2, 0.5)[0] == 4      # at least the hysteresis
    assert damp_template_change(20, 60, 1, 80, 0, 15, 2, 0.5)[0] == 80    # never above the cap
    # A ramp 2, 4, ..., 50 wanted one step a minute: with headroom a handful of Revisions.
    current, changes, last_change = 1, 0, -100
    for minute, want in enumerate(range(2, 52, 2)):
        value, _ = damp_template_change(current, want, 1, 100, minute - last_change, 15, 2, 0.5)
        if value != current:
            changes, last_change, current = changes + 1, minute, value
        assert value >= want - 2  # never more than the hysteresis below what is wanted
    assert changes <= 6


def test_template_damping_bounds_rollouts_over_a_day_of_noisy_wants():
    import numpy as np

    rng = np.random.default_rng(0)
    wants = np.clip(np.round(10 + 5 * np.sin(np.arange(1440) / 90) + rng.normal(0, 1.5, 1440)), 1, 40).astype(int)
    current, last_change, changes = 1, -10**6, 0
    for minute, want in enumerate(wants):
        value, _ = damp_template_change(current, int(want), 1, 40, minute - last_change, 15, 2)
        if value < current:
            assert minute - last_change >= 15, "a decrease inside the cooldown"
        if value != current:
            assert abs(value - current) > 2 or minute - last_change >= 15, "a small change inside the cooldown"
            current, last_change, changes = value, minute, changes + 1
        assert value >= want or want - value <= 2  # never far below what is wanted
    undamped = int(np.count_nonzero(np.diff(wants)))
    assert changes < undamped / 5


def test_min_scale_key_keeps_the_spelling_in_use():
    assert kn.min_scale_key({}) == kn.MIN_SCALE
    assert kn.min_scale_key({kn.MIN_SCALE_LEGACY: "2"}) == kn.MIN_SCALE_LEGACY
    assert kn.min_scale_key({kn.MIN_SCALE_LEGACY: "2", kn.MIN_SCALE: "3"}) == kn.MIN_SCALE
    assert kn.read_min_scale({kn.MIN_SCALE_LEGACY: "4"}) == 4
    assert kn.read_min_scale({kn.MIN_SCALE: "x"}) is None
    assert kn.read_max_scale({kn.MAX_SCALE: "0"}) is None  # 0 = unlimited in Knative


@pytest.mark.parametrize("text,version", [("v1.21.0", (1, 21)), ("1.18", (1, 18)), ("devel", (99, 0)),
                                          ("", None), ("nightly", None)])
def test_knative_version_labels(text, version):
    assert kn.parse_knative_version(text) == version


def test_views_of_knative_objects():
    body = {"metadata": {"namespace": "ns", "name": "fn", "resourceVersion": "7"},
            "spec": {"template": {"metadata": {"annotations": {kn.MIN_SCALE: "1"}},
                                  "spec": {"containerConcurrency": 10, "containers": [{}]}}},
            "status": {"latestReadyRevisionName": "fn-00002"}}
    info = kn.service_info(body)
    assert (info.latest_ready_revision, info.container_concurrency, info.template_annotations) == \
        ("fn-00002", 10, {kn.MIN_SCALE: "1"})
    rev = kn.revision_info({"metadata": {"namespace": "ns", "name": "fn-00002", "resourceVersion": "9",
                                         "labels": {kn.SERVICE_LABEL: "fn"}}})
    assert rev.service == "fn" and rev.annotations == {}


def test_original_record_round_trip_and_garbage():
    record = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, None)
    restored = OriginalRecord.from_annotations({"mesp.dev/original-min-scale": record.to_json()})
    assert restored == record
    assert OriginalRecord.from_annotations({"mesp.dev/original-min-scale": "{not json"}) is None
    policy = PolicyObject.from_body({"metadata": {"namespace": "a", "name": "p", "uid": "u", "generation": 3,
                                                  "deletionTimestamp": "2026-01-01T00:00:00Z"},
                                     "spec": {"service": "fn"}})
    assert policy.deleting and policy.generation == 3 and policy.key == ("a", "p")


@pytest.mark.parametrize("exc,kind,retryable", [
    (ApiException(status=409, reason="Conflict"), "api_conflict", True),
    (ApiException(status=503, reason="Unavailable"), "api_server", True),
    (ApiException(status=429, reason="Too Many"), "api_server", True),
    (ApiException(status=403, reason="Forbidden"), "api_forbidden", False),
    (ApiException(status=422, reason="Invalid"), "api_rejected", False),
    (MetricsError("down"), "prometheus", True),
    (PolicyError("bad"), "policy_invalid", False),
    (TimeoutError("slow"), "timeout", True),
    (ConnectionRefusedError("no"), "connection", True),
    (__import__("urllib3").exceptions.ReadTimeoutError(None, "/", "read timed out"), "timeout", True),
    (__import__("urllib3").exceptions.MaxRetryError(None, "/", "refused"), "connection", True),
])
def test_errors_are_classified_in_one_place(exc, kind, retryable):
    info = classify(exc)
    assert (info.kind, info.retryable) == (kind, retryable)
    assert "\n" not in info.message


def test_api_error_message_comes_from_the_status_body():
    exc = ApiException(status=422, reason="Invalid")
    exc.body = json.dumps({"message": "spec.mode: Unsupported value"})
    assert classify(exc).message == "API 422: spec.mode: Unsupported value"


def test_context_covers_the_widest_expert_and_at_least_a_day():
    assert model_context_minutes({}) == 1440
    manifest = {"clusters": [{"expert": {"config": {"input_size": 240}}}],
                "naive": {"config": {"input_size": 2880}}}
    assert model_context_minutes(manifest) == 2880


def _throttled(status=429, retry_after=None):
    exc = ApiException(status=status, reason="Too Many Requests")
    exc.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return exc


def test_throttle_delay_honours_retry_after_within_a_cap():
    assert kn.throttle_delay(_throttled(), 1) == 0.25 and kn.throttle_delay(_throttled(), 3) == 1.0
    assert kn.throttle_delay(_throttled(retry_after="1"), 1) == 1.0
    assert kn.throttle_delay(_throttled(retry_after="60"), 1) == kn.THROTTLE_MAX_DELAY_SECONDS
    assert kn.throttle_delay(_throttled(retry_after="soon"), 2) == 0.5


def test_min_scale_write_waits_out_throttling_then_gives_up_to_the_next_loop():
    """The compare-and-set write of min-scale: 429/503 are retried after a short wait, a fourth in a
    row is raised (the next loop retries), and other errors are raised at once."""
    sent, slept = [], []

    def run(failures):
        queue = list(failures)

        def send(body):
            if queue:
                raise queue.pop(0)
            sent.append(body)

        read = lambda: {"metadata": {"resourceVersion": "7", "annotations": {}}}
        return kn.KnativeClient._write(read, lambda b: b["metadata"]["annotations"],
                                       lambda key, rv: {"rv": rv, key: "3"}, send, "3", None, sleep=slept.append)

    result = run([_throttled(), _throttled(503)])
    assert result.changed and sent == [{"rv": "7", kn.MIN_SCALE: "3"}] and slept == [0.25, 0.5]
    slept.clear()
    with pytest.raises(ApiException) as raised:
        run([_throttled()] * 4)
    assert raised.value.status == 429 and len(slept) == kn.THROTTLE_RETRIES
    slept.clear()
    with pytest.raises(ApiException):
        run([ApiException(status=403, reason="Forbidden")])
    assert slept == []
    # 409 still means: re-read and compare again, without waiting.
    assert run([ApiException(status=409, reason="Conflict")]).changed and slept == []


def test_status_writes_wait_out_throttling_too():
    calls, slept = [], []

    def call():
        calls.append(1)
        if len(calls) < 3:
            raise _throttled(retry_after="0.1")
        return "ok"

    assert kn.with_throttle_retries(call, sleep=slept.append) == "ok" and slept == [0.1, 0.1]
    with pytest.raises(ApiException):
        kn.with_throttle_retries(lambda: (_ for _ in ()).throw(_throttled()), sleep=slept.append)


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


def test_api_calls_give_up_on_a_server_that_never_answers(monkeypatch):
    """A real socket that accepts and stays silent: every call MESP makes itself must time out."""
    import socket
    import time

    from kubernetes import client

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        config = client.Configuration()
        config.host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config.retries = False
        knative = kn.KnativeClient(client.ApiClient(config))
        monkeypatch.setattr(kn, "API_REQUEST_TIMEOUT", (1, 1))
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            knative.get_service("ns", "svc")
        assert time.monotonic() - started < 10
        assert classify(info.value).kind == "timeout"
    finally:
        listener.close()
