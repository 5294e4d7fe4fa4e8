"""Knative objects: annotation keys, version labels, views, and conflict- and throttle-safe writes."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from mesp_operator import knative as kn
from mesp_operator.errors import classify


def test_min_scale_key_keeps_the_spelling_in_use():
    assert kn.min_scale_key({}) == kn.MIN_SCALE
    assert kn.min_scale_key({kn.MIN_SCALE_LEGACY: "2"}) == kn.MIN_SCALE_LEGACY
    assert kn.min_scale_key({kn.MIN_SCALE_LEGACY: "2", kn.MIN_SCALE: "3"}) == kn.MIN_SCALE
    assert kn.read_min_scale({kn.MIN_SCALE_LEGACY: "4"}) == 4
    assert kn.read_min_scale({kn.MIN_SCALE: "x"}) is None
    assert kn.read_max_scale({kn.MAX_SCALE: "0"}) is None  # 0 = unlimited in Knative


@pytest.mark.parametrize("text,version", [("v1.21.0", (1, 21)), ("1.18", (1, 18)), ("devel", None),
                                          ("", None), ("nightly", None)])
def test_knative_version_labels(text, version):
    assert kn.parse_knative_version(text) == version


@pytest.mark.parametrize("label,supported,says", [
    ("v1.21.0", True, "Knative v1.21.0: Revision annotations propagate"),
    ("1.20.2", False, "Knative 1.20.2: Revision annotations need a new Revision"),
    # 'devel' is any unreleased build, Knative 1.20's too: decided as unknown, and the reason says so.
    ("devel", False, "Knative 'devel' (installed from source, release unknown); assuming < 1.21, so Template"),
    (None, False, "Knative version unknown (None); assuming < 1.21, so Template"),
])
def test_revision_annotation_support_says_why(label, supported, says):
    ok, why = kn.revision_annotation_support(label)
    assert ok is supported and why.startswith(says)
    if label in ("devel", None):
        assert "spec.actuation: Revision" in why  # how to override the guess


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


def test_scale_annotations_are_read_as_non_negative_integers():
    assert kn.read_min_scale({kn.MIN_SCALE: " 3 "}) == 3
    assert kn.read_min_scale({kn.MIN_SCALE: "-1"}) is None and kn.read_min_scale(None) is None
    assert kn.read_max_scale({kn.MAX_SCALE_LEGACY: "12"}) == 12
    assert kn.read_min_scale({kn.MIN_SCALE: "5", kn.MIN_SCALE_LEGACY: "2"}) == 5  # the current spelling first
    assert kn.read_scale({kn.TARGET: "10"}, kn.TARGET, kn.TARGET) == 10


def test_views_of_incomplete_objects():
    info = kn.service_info({"metadata": {"namespace": "ns", "name": "fn"},
                            "spec": {"template": {"spec": {"containerConcurrency": "10"}}}})
    assert (info.template_annotations, info.latest_ready_revision, info.container_concurrency) == ({}, None, None)
    assert kn.revision_info({"metadata": {}}).service is None


def test_writes_land_where_knative_reads_them_in_the_spelling_in_use():
    from .fake_cluster import FakeCluster, clients

    cluster = FakeCluster()
    cluster.add_service("ns", "fn", {kn.MIN_SCALE_LEGACY: "1"}, "fn-00001")
    cluster.add_revision("ns", "fn-00001", "fn", {})
    knative, _ = clients(cluster)
    result = knative.set_template_min_scale("ns", "fn", "4")
    assert (result.changed, result.previous, result.key) == (True, "1", kn.MIN_SCALE_LEGACY)
    assert cluster.body("services", "ns", "fn")["spec"]["template"]["metadata"]["annotations"] == \
        {kn.MIN_SCALE_LEGACY: "4"}
    assert not knative.set_template_min_scale("ns", "fn", "4").changed  # already so: nothing sent
    assert knative.set_revision_min_scale("ns", "fn-00001", "2").changed
    assert cluster.revision_min_scale("ns", "fn-00001") == "2"
    stale = kn.revision_info(cluster.body("revisions", "ns", "fn-00001"))
    cluster.patch_namespaced_custom_object(kn.GROUP, kn.VERSION, "ns", "revisions", "fn-00001",
                                           {"metadata": {"labels": {"touched": "yes"}}})
    # A stale view gets a 409 and is read again; None removes the annotation.
    assert knative.set_revision_min_scale("ns", "fn-00001", None, known=stale).previous == "2"
    assert cluster.revision_min_scale("ns", "fn-00001") is None
