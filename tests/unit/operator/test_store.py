"""What MESP keeps about a policy: the original-value record and the in-process memory."""

from __future__ import annotations

from mesp_operator import knative as kn
from mesp_operator.store import OriginalRecord


def test_original_record_round_trip_and_garbage():
    record = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, None)
    restored = OriginalRecord.from_annotations({"mesp.dev/original-min-scale": record.to_json()})
    assert restored == record
    assert OriginalRecord.from_annotations({"mesp.dev/original-min-scale": "{not json"}) is None
