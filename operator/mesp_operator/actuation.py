"""Writing min-scale on the user's Knative objects, and giving the user's own value back.

Before MESP's first write on a Revision or Service template, the value found there is recorded on the
MespPolicy (store.OriginalRecord); a policy that stops writing (Off, ForecastOnly, invalid, its Service
gone, or deleted) restores it, unless someone changed the value since. Template writes, a rollout each,
are damped (decisions.damp_template_change).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

from mesp_operator import knative as kn
from mesp_operator.decisions import damp_template_change
from mesp_operator.metrics import OperatorMetrics
from mesp_operator.spec import PolicyObject
from mesp_operator.status import Outcome
from mesp_operator.store import ORIGINAL_ANNOTATION, OriginalRecord, PolicyMemory, PolicyStore


def _always_owned(policy: PolicyObject) -> None:
    return None


class Actuator:
    """`event(policy, type, reason, message)` posts an Event and never raises; `guard(policy)` runs
    before every write and raises (errors.NotOwner) when this replica may no longer write for it."""

    def __init__(self, knative: kn.KnativeClient, store: PolicyStore, metrics: OperatorMetrics,
                 event: Callable[[PolicyObject, str, str, str], None],
                 guard: Callable[[PolicyObject], None] = _always_owned):
        self.knative = knative
        self.store = store
        self.metrics = metrics
        self.event = event
        self.guard = guard

    def apply(self, o: Outcome, actuation: str, record: OriginalRecord | None, applied: int | None,
              memory: PolicyMemory, revisions: Mapping[tuple[str, str], kn.RevisionInfo],
              now: float) -> tuple[str, int | None, str | None]:
        """Write the min-scale the plan asks for now on the Revision or the Service template, the
        user's own value recorded first. Returns (state, value MESP has in place, user's own value)."""
        policy, svc = o.policy, o.service
        if actuation == "Revision":
            name = svc.latest_ready_revision
            if not name:
                o.set("Actuated", False, "NoReadyRevision", f"Service {svc.name} has no ready Revision yet")
                return "Waiting", applied, record.value if record else None
            known = revisions.get((policy.namespace, name))
            if known is None:
                known = kn.revision_info(self.knative.get_revision(policy.namespace, name))
            annotations = known.annotations
        else:
            name, known, annotations = svc.name, svc, svc.template_annotations
        kind = "Revision" if actuation == "Revision" else "Service"

        # A different target than the recorded one (new Revision, or mode switch): give the old one back.
        if record is not None and (record.kind, record.name) != (kind, name):
            msg = self.restore(policy, record, applied)
            self.event(policy, "Normal", "MinScaleRestored", msg)
            record, applied, memory.written = None, None, None
        key = kn.min_scale_key(annotations)
        current = annotations.get(key)
        if record is None:
            unreadable = policy.annotations.get(ORIGINAL_ANNOTATION)
            if unreadable:  # edited by hand: what it held is lost, so say what is recorded instead
                self.event(policy, "Warning", "OriginalRecordUnreadable",
                           f"annotation {ORIGINAL_ANNOTATION} is not MESP's record ({unreadable[:200]!r}); "
                           f"recording the current min-scale {current or 'unset'} as the user's own")
            record = OriginalRecord(kind, name, key, current)
            self.guard(policy)
            self.store.set_original(policy, record)  # saved before the first write, so it can be restored
            if o.spec.min_scale is None:
                # What is there before MESP's first write is the user's own, e.g. the min-scale of the
                # user's rollout (a new Revision): the floor from this loop on, not the old record's.
                o.floor = kn.read_min_scale({key: current} if current is not None else {}) or 0
                o.cap = max(o.cap, o.floor)
        elif applied is not None and current is not None and current != str(applied) and current != record.value:
            # Someone else changed the value since MESP wrote it: that is the user's new intent.
            record = dataclasses.replace(record, value=current)
            self.store.set_original(policy, record)
            if o.spec.min_scale is None:  # the floor was read from the old record: never write below the new one
                o.floor = kn.read_min_scale({key: current}) or 0
                o.cap = max(o.cap, o.floor)

        value = o.value if o.value is not None else o.floor
        value = min(max(value, o.floor), o.cap)
        if actuation == "Template":
            current_value = kn.read_min_scale({key: current} if current is not None else {})
            since = math.inf if memory.changed_at is None else (now - memory.changed_at) / 60.0
            value, why = damp_template_change(
                current_value if current_value is not None else o.floor, value, o.floor, o.cap, since,
                o.spec.template_cooldown, o.spec.template_hysteresis, o.spec.template_raise_headroom)
            o.reasons = [why] + o.reasons[:2]
        self.guard(policy)
        if actuation == "Revision":
            result = self.knative.set_revision_min_scale(policy.namespace, name, str(value), known=known)
        else:
            result = self.knative.set_template_min_scale(policy.namespace, name, str(value), known=known)
        target = f"{'Revision' if actuation == 'Revision' else 'Service template'} {name}"
        memory.written = (record.kind, record.name, value)
        if result.changed:
            memory.changed_at = now
            self.metrics.actuations.labels(actuation.lower()).inc()
            why = "; ".join(o.reasons) or o.plan_source
            self.event(policy, "Normal", "MinScaleSet",
                       f"{target}: min-scale {result.previous or 'unset'} -> {value} ({why})")
        at_cap = f", the cap set by {o.cap_why}" if value == o.cap and value > o.floor and o.cap_why else ""
        o.set("Actuated", True, "Applied", f"{target} has min-scale {value}{at_cap}")
        return "Actuated", value, record.value

    def give_back(self, policy: PolicyObject, record: OriginalRecord, applied: int | None, memory: PolicyMemory,
                  now: float) -> None:
        """Restore the recorded min-scale (a policy that is off, invalid or without its Service) and say so."""
        msg = self.restore(policy, record, applied)
        self.event(policy, "Normal", "MinScaleRestored", msg)
        self.metrics.actuations.labels("restore").inc()
        memory.written, memory.changed_at = None, now

    def restore(self, policy: PolicyObject, record: OriginalRecord, applied: int | None) -> str:
        """Give the recorded object its own min-scale back (unless someone changed it since)."""
        from kubernetes.client.exceptions import ApiException

        try:
            body = (self.knative.get_revision if record.kind == "Revision" else self.knative.get_service)(
                policy.namespace, record.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.store.set_original(policy, None)
            return f"{record.kind} {record.name} is gone; nothing to restore"
        if record.kind == "Revision":
            annotations = (body.get("metadata") or {}).get("annotations") or {}
        else:
            annotations = kn.service_info(body).template_annotations
        current = annotations.get(record.key)
        if applied is not None and current is not None and current != str(applied):
            self.store.set_original(policy, None)
            return f"{record.kind} {record.name}: min-scale was changed to {current} by someone else; left as is"
        self.guard(policy)
        if record.kind == "Revision":
            self.knative.set_revision_min_scale(policy.namespace, record.name, record.value)
        else:
            self.knative.set_template_min_scale(policy.namespace, record.name, record.value)
        self.store.set_original(policy, None)
        return f"{record.kind} {record.name}: min-scale restored to {record.value or 'unset'}"
