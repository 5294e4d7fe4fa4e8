"""What MESP keeps about a policy: the original-value record, the in-process memory, and the writes
to MESP's own object (status, record, Events)."""

from __future__ import annotations

import pytest

from mesp_operator import knative as kn
from mesp_operator.spec import PolicyObject
from mesp_operator.store import ORIGINAL_ANNOTATION, OriginalRecord, PolicyMemory, PolicyStore


def test_original_record_round_trip_and_garbage():
    record = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, None)
    restored = OriginalRecord.from_annotations({"mesp.dev/original-min-scale": record.to_json()})
    assert restored == record
    assert OriginalRecord.from_annotations({"mesp.dev/original-min-scale": "{not json"}) is None


@pytest.mark.parametrize("annotation", ["", '{"kind": "Revision"}', "[1, 2]", "null"])
def test_a_hand_edited_record_is_no_record(annotation):
    assert OriginalRecord.from_annotations({ORIGINAL_ANNOTATION: annotation}) is None


@pytest.mark.parametrize("key,value,floor", [(kn.MIN_SCALE, "3", 3), (kn.MIN_SCALE_LEGACY, "2", 2),
                                             (kn.MIN_SCALE, None, 0), (kn.MIN_SCALE, "lots", 0)])
def test_the_recorded_value_reads_as_a_floor(key, value, floor):
    assert OriginalRecord("Service", "fn", key, value).min_scale() == floor


def test_the_last_written_value_is_this_process_own_write_on_the_recorded_object():
    record = OriginalRecord("Revision", "fn-00002", kn.MIN_SCALE, "1")
    memory = PolicyMemory(written=("Revision", "fn-00002", 6))
    assert memory.last_written(record, applied=4) == 6           # the status saying 6 may not have been written
    assert PolicyMemory().last_written(record, applied=4) == 4    # nothing written here: the status's figure
    moved = PolicyMemory(written=("Revision", "fn-00001", 6))    # written on another object: not this one's value
    assert moved.last_written(record, applied=4) == 4
    assert memory.last_written(None, applied=None) is None


class _RecordingCustomObjects:
    def __init__(self):
        self.calls = []

    def patch_namespaced_custom_object_status(self, *args, **kwargs):
        self.calls.append(("status", args, kwargs))

    def patch_namespaced_custom_object(self, *args, **kwargs):
        self.calls.append(("object", args, kwargs))


class _RecordingCore:
    def __init__(self):
        self.events = []

    def create_namespaced_event(self, namespace, body, **kwargs):
        self.events.append((namespace, body, kwargs))


def _store():
    from kubernetes import client

    store = PolicyStore(client.ApiClient(client.Configuration()))
    store.custom, store.core = _RecordingCustomObjects(), _RecordingCore()
    return store


POLICY = PolicyObject(namespace="team", name="p", uid="u-1", generation=2, spec={}, annotations={}, status={})


def test_the_store_writes_status_and_the_record_on_mesps_own_object_with_a_timeout():
    store = _store()
    record = OriginalRecord("Service", "fn", kn.MIN_SCALE, "2")
    store.patch_status(POLICY, {"planSource": "fresh"})
    store.set_original(POLICY, record)
    store.set_original(POLICY, None)
    (_, status_args, status_kwargs), (_, set_args, _), (_, clear_args, _) = store.custom.calls
    assert status_args == ("mesp.dev", "v1alpha1", "team", "mesppolicies", "p", {"status": {"planSource": "fresh"}})
    assert status_kwargs == {"_request_timeout": kn.API_REQUEST_TIMEOUT}
    assert set_args[-1] == {"metadata": {"annotations": {ORIGINAL_ANNOTATION: record.to_json()}}}
    assert clear_args[-1] == {"metadata": {"annotations": {ORIGINAL_ANNOTATION: None}}}  # null removes it


def test_events_name_the_policy_and_keep_messages_short():
    store = _store()
    store.event(POLICY, "Warning", "InvalidSpec", "x" * 2000)
    ((namespace, body, kwargs),) = store.core.events
    assert namespace == "team" and kwargs == {"_request_timeout": kn.API_REQUEST_TIMEOUT}
    involved = body.involved_object
    assert (involved.api_version, involved.kind, involved.name, involved.uid) == \
        ("mesp.dev/v1alpha1", "MespPolicy", "p", "u-1")
    assert (body.type, body.reason, len(body.message)) == ("Warning", "InvalidSpec", 1024)
    assert body.metadata.name.startswith("p.") and body.source.component == "mesp-operator"
