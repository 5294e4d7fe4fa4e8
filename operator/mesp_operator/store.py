"""What MESP keeps about each policy: on the cluster, the user's original min-scale (recorded on the
MespPolicy before MESP's first write, so it can be given back), the status and the Events; in this
process, the PolicyMemory carried from one loop to the next.

Only MESP's own objects are written here; writes to users' Knative objects are in knative.py.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timezone
from typing import Mapping

from mesp_core.policy import PlanState
from mesp_operator import knative as kn
from mesp_operator.forecast import FloorChoice
from mesp_operator.spec import GROUP, KIND, PLURAL, VERSION, PolicyObject

ORIGINAL_ANNOTATION = "mesp.dev/original-min-scale"


@dataclasses.dataclass(frozen=True)
class OriginalRecord:
    """The user's own min-scale on the object MESP writes to, saved before the first write."""

    kind: str           # "Revision" or "Service" (template)
    name: str
    key: str            # the annotation key in use on that object
    value: str | None   # None: the annotation was absent

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> "OriginalRecord | None":
        raw = annotations.get(ORIGINAL_ANNOTATION)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(kind=str(data["kind"]), name=str(data["name"]), key=str(data["key"]),
                       value=None if data.get("value") is None else str(data["value"]))
        except (ValueError, KeyError, TypeError):
            return None

    def min_scale(self) -> int:
        """The recorded value as a number: 0 when it was unset or is not a min-scale."""
        return kn.read_min_scale({self.key: self.value} if self.value is not None else {}) or 0


@dataclasses.dataclass
class PolicyMemory:
    """Per-policy state kept between loops (rebuilt from status after a restart: status.memory_from_status)."""

    plan: list[int] | None = None
    plan_start: int | None = None         # unix time of plan[0]
    planned_at: float | None = None       # when that plan was computed from fresh metrics
    changed_at: float | None = None       # when the value MESP applies last changed
    forecast_next: float | None = None
    forecast_peak: float | None = None
    route: dict | None = None
    learned_floor: str | None = None      # the floor policy the model's floor stage chose for the plan
    floor_choice: FloorChoice | None = None  # ... and the reselect boundary it was chosen at (kept until the next)
    state_minute: int | None = None       # plan_start of the last fresh plan
    state_in: PlanState | None = None     # the plan's damping state entering that minute
    state_out: PlanState | None = None    # ... and after it
    reported: dict = dataclasses.field(default_factory=dict)   # condition type -> reason last told by Event
    invalid_generation: int | None = None
    written: tuple[str, str, int] | None = None  # (kind, name, value) MESP last wrote and has not given back

    def last_written(self, record: OriginalRecord | None, applied: int | None) -> int | None:
        """What MESP last wrote on the recorded object: this process's own write when it made one
        (the status that says so may have failed to be written), else `applied` (status.appliedMinScale)."""
        if self.written is not None and record is not None and self.written[:2] == (record.kind, record.name):
            return self.written[2]
        return applied


class PolicyStore:
    """Writes to MESP's own objects: status, the original-value annotation, Events."""

    def __init__(self, api_client, component: str = "mesp-operator"):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.component = component

    def patch_status(self, policy: PolicyObject, status: dict) -> None:
        kn.with_throttle_retries(lambda: self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, policy.namespace, PLURAL, policy.name, {"status": status},
            _request_timeout=kn.API_REQUEST_TIMEOUT))

    def set_original(self, policy: PolicyObject, record: OriginalRecord | None) -> None:
        value = None if record is None else record.to_json()
        kn.with_throttle_retries(lambda: self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, policy.namespace, PLURAL, policy.name,
            {"metadata": {"annotations": {ORIGINAL_ANNOTATION: value}}}, _request_timeout=kn.API_REQUEST_TIMEOUT))

    def get(self, namespace: str, name: str) -> PolicyObject:
        return PolicyObject.from_body(self.get_body(namespace, name))

    def get_body(self, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=kn.API_REQUEST_TIMEOUT)

    def event(self, policy: PolicyObject, type_: str, reason: str, message: str) -> None:
        from kubernetes import client

        now = datetime.now(timezone.utc)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{policy.name}.{uuid.uuid4().hex[:16]}", namespace=policy.namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}", kind=KIND, name=policy.name,
                namespace=policy.namespace, uid=policy.uid),
            reason=reason, message=message[:1024], type=type_, count=1,
            first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=self.component),
            reporting_component=self.component, reporting_instance=self.component,
        )
        self.core.create_namespaced_event(policy.namespace, body, _request_timeout=kn.API_REQUEST_TIMEOUT)
