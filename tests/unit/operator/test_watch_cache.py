"""The pure parts of the list+watch caches: applying events, what a relist removes, watch errors, the
retry delays, and merging namespaces. tests/integration/test_operator_cache.py runs the threads
against a real API server."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from mesp_operator import knative as kn
from mesp_operator.errors import classify
from mesp_operator.spec import PolicyObject
from mesp_operator.watch_cache import (
    ResourceCache,
    WatchGone,
    apply_event,
    object_key,
    removed_keys,
    retry_delay,
    watch_error,
)


def _policy(name: str, generation: int = 1, ns: str = "ns") -> dict:
    return {"metadata": {"namespace": ns, "name": name, "uid": f"u-{name}", "generation": generation,
                         "resourceVersion": str(generation), "annotations": {"a": "b"}},
            "spec": {"service": name}, "status": {}}


def test_events_add_replace_and_delete_compact_views():
    items: dict = {}
    key, view = apply_event(items, "ADDED", _policy("p"), PolicyObject.from_body)
    assert key == ("ns", "p") and items == {key: view} and view.generation == 1
    _, changed = apply_event(items, "MODIFIED", _policy("p", 2), PolicyObject.from_body)
    assert items[key] is changed and changed.generation == 2
    assert apply_event(items, "DELETED", _policy("p", 2), PolicyObject.from_body) == (key, None)
    assert items == {}
    apply_event(items, "DELETED", _policy("never-seen"), PolicyObject.from_body)  # no error
    assert items == {}


def test_the_cache_keeps_the_loops_view_not_the_body():
    body = {"metadata": {"namespace": "ns", "name": "fn", "resourceVersion": "7", "managedFields": [{"x": 1}]},
            "spec": {"template": {"metadata": {"annotations": {kn.MIN_SCALE: "2"}}}},
            "status": {"latestReadyRevisionName": "fn-00001", "conditions": [{"type": "Ready"}]}}
    items: dict = {}
    _, view = apply_event(items, "ADDED", body, kn.service_info)
    assert isinstance(view, kn.ServiceInfo) and view.latest_ready_revision == "fn-00001"
    assert object_key(body) == ("ns", "fn")


def test_a_relist_drops_what_was_deleted_while_the_watch_was_away():
    old = {("ns", "a"): 1, ("ns", "b"): 2, ("ns", "c"): 3}
    assert removed_keys(old, {("ns", "a"): 1, ("ns", "d"): 4}) == [("ns", "b"), ("ns", "c")]
    assert removed_keys({}, {("ns", "a"): 1}) == []


def test_a_410_in_the_stream_means_relist_and_other_errors_are_classified():
    assert isinstance(watch_error({"code": 410, "message": "too old resource version: 5 (9)"}), WatchGone)
    forbidden = watch_error({"code": 403, "reason": "Forbidden", "message": "cannot watch services"})
    assert isinstance(forbidden, ApiException)
    info = classify(forbidden)
    assert info.kind == "api_forbidden" and "cannot watch services" in info.message
    assert classify(watch_error({"code": 500, "message": "etcd"})).retryable


@pytest.mark.parametrize("failures,delay", [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (50, 30.0)])
def test_retries_back_off_doubling_up_to_a_cap(failures, delay):
    assert retry_delay(failures) == delay


class _Watch:
    """A ResourceWatch's reading side only (ResourceCache reads `items`, `listed`, snapshot, get)."""

    def __init__(self, items: dict, listed: bool):
        import threading

        self.items, self.listed = items, threading.Event()
        if listed:
            self.listed.set()

    def snapshot(self):
        return dict(self.items)

    def get(self, key):
        return self.items.get(key)


def test_a_cache_over_namespaces_is_listed_only_when_every_namespace_is():
    a, b = _Watch({("a", "x"): 1}, True), _Watch({("b", "y"): 2}, False)
    cache = ResourceCache([a, b])
    assert not cache.listed
    b.listed.set()
    assert cache.listed and len(cache) == 2
    assert cache.snapshot() == {("a", "x"): 1, ("b", "y"): 2}
    assert cache.get(("b", "y")) == 2 and cache.get(("a", "y")) is None
