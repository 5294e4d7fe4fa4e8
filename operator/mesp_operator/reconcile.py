"""One loop over all MespPolicies: fetch counts -> forecast in one batch -> plan -> actuate -> report.

Nothing here imports kopf: the handlers feed this module plain views of the watched objects, so the
whole decision path runs (and is tested) against a real API server without the framework.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import json
import logging
import math
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from mesp_operator import knative as kn
from mesp_operator.errors import Classified, MetricsError, PolicyError, classify
from mesp_operator.metrics import OperatorMetrics
from mesp_operator.prometheus import STEP_SECONDS, render_override
from mesp_operator.settings import OperatorSettings

log = logging.getLogger("mesp.operator")

GROUP = "mesp.dev"
VERSION = "v1alpha1"
PLURAL = "mesppolicies"
KIND = "MespPolicy"
ORIGINAL_ANNOTATION = "mesp.dev/original-min-scale"
MODES = ("Off", "ForecastOnly", "Active")
ACTUATIONS = ("Auto", "Revision", "Template")
APPROACHES = ("moe", "dense", "naive")
CONDITION_TYPES = ("Ready", "ModelLoaded", "MetricsAvailable", "Actuated")
SUPPORT_RECHECK_SECONDS = 600.0


# ---------------------------------------------------------------------------------------------- views
@dataclasses.dataclass(frozen=True)
class PolicyObject:
    """What the loop needs from one MespPolicy (built from the watch index or a GET)."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    annotations: Mapping[str, str]
    status: Mapping[str, Any]
    deleting: bool = False
    created: str = ""   # metadata.creationTimestamp (RFC 3339: sorts by time as text)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "PolicyObject":
        meta = body.get("metadata") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            annotations=dict(meta.get("annotations") or {}),
            status=dict(body.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
            created=str(meta.get("creationTimestamp") or ""),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A validated spec (the CRD schema checks most of it; this re-checks what the schema cannot)."""

    service: str
    mode: str = "ForecastOnly"
    actuation: str = "Auto"
    horizon: int = 60
    lead: int = 2
    hold: int = 2
    quantile: float | None = 0.9
    capacity: float | None = None
    request_duration_ms: float | None = None  # None: measured from Prometheus, else DEFAULT_REQUEST_DURATION_MS
    min_scale: int | None = None
    max_scale: int | None = None
    cooldown: int = 2
    hysteresis: int = 0
    template_cooldown: int = 10
    template_hysteresis: int = 1
    template_raise_headroom: float = 1.0
    approach: str = "moe"
    promql: str | None = None


def _get_int(spec, path, default, low=None, high=None):
    node = spec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return default
    if isinstance(node, bool) or not isinstance(node, (int, float)) or int(node) != node:
        raise PolicyError(f"spec.{path} must be an integer, got {node!r}")
    node = int(node)
    if (low is not None and node < low) or (high is not None and node > high):
        raise PolicyError(f"spec.{path} must be in [{low}, {high}], got {node}")
    return node


def _get_number(spec, path, default, low, high, low_inclusive=True):
    node = spec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return default
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        raise PolicyError(f"spec.{path} must be a number, got {node!r}")
    if node < low or node > high or (node == low and not low_inclusive):
        raise PolicyError(f"spec.{path} must be in {'[' if low_inclusive else '('}{low}, {high}], got {node}")
    return float(node)


def parse_spec(spec: Mapping[str, Any], settings: OperatorSettings, model_horizon_limit: int = 1440) -> PolicySpec:
    """Validate a MespPolicy spec; PolicyError names the field and the rule."""
    if not isinstance(spec, Mapping):
        raise PolicyError("spec must be an object")
    service = spec.get("service")
    if not isinstance(service, str) or not service:
        raise PolicyError("spec.service must name a Knative Service in the policy's namespace")
    mode = spec.get("mode", "ForecastOnly")
    if mode not in MODES:
        raise PolicyError(f"spec.mode must be one of {', '.join(MODES)}, got {mode!r}")
    actuation = spec.get("actuation", "Auto")
    if actuation not in ACTUATIONS:
        raise PolicyError(f"spec.actuation must be one of {', '.join(ACTUATIONS)}, got {actuation!r}")
    approach = spec.get("approach", "moe")
    if approach not in APPROACHES:
        raise PolicyError(f"spec.approach must be one of {', '.join(APPROACHES)}, got {approach!r}")
    quantile = spec.get("quantile", 0.9)
    if quantile is not None:
        quantile = _get_number(spec, "quantile", 0.9, 0.0, 0.999, low_inclusive=False)
    min_scale = _get_int(spec, "minScale", None, 0, 100000)
    max_scale = _get_int(spec, "maxScale", None, 1, 100000)
    if min_scale is not None and max_scale is not None and min_scale > max_scale:
        raise PolicyError(f"spec.minScale ({min_scale}) must not exceed spec.maxScale ({max_scale})")
    promql = spec.get("promql")
    if promql is not None and (not isinstance(promql, str) or not promql.strip()):
        raise PolicyError("spec.promql must be a non-empty PromQL string")
    return PolicySpec(
        service=service,
        mode=mode,
        actuation=actuation,
        horizon=_get_int(spec, "horizonMinutes", 60, 1, model_horizon_limit),
        lead=_get_int(spec, "leadMinutes", 2, 0, 120),
        hold=_get_int(spec, "holdMinutes", 2, 0, 120),
        quantile=quantile,
        capacity=_get_number(spec, "capacityPerInstance", None, 0.0, 1e9, low_inclusive=False),
        request_duration_ms=_get_number(spec, "requestDurationMs", None, 0.0, 3.6e6, low_inclusive=False),
        min_scale=min_scale,
        max_scale=max_scale,
        cooldown=_get_int(spec, "scaleDown.cooldownMinutes", 2, 0, 1440),
        hysteresis=_get_int(spec, "scaleDown.hysteresis", 0, 0, 100000),
        template_cooldown=_get_int(spec, "template.cooldownMinutes", settings.template_cooldown_minutes, 0, 1440),
        template_hysteresis=_get_int(spec, "template.hysteresis", settings.template_hysteresis, 0, 100000),
        template_raise_headroom=_get_int(spec, "template.raiseHeadroomPercent", 100, 0, 1000) / 100.0,
        approach=approach,
        promql=promql,
    )


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


# ---------------------------------------------------------------------------------------------- writes
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
        return PolicyObject.from_body(self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=kn.API_REQUEST_TIMEOUT))

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


# ---------------------------------------------------------------------------------------------- state
@dataclasses.dataclass
class PolicyMemory:
    """Per-policy state kept between loops (rebuilt from status after a restart)."""

    plan: list[int] | None = None
    plan_start: int | None = None         # unix time of plan[0]
    planned_at: float | None = None       # when that plan was computed from fresh metrics
    changed_at: float | None = None       # when the value MESP applies last changed
    forecast_next: float | None = None
    forecast_peak: float | None = None
    route: dict | None = None
    state_minute: int | None = None       # plan_start of the last fresh plan
    state_in: Any = None                  # mesp_core.policy.PlanState entering that minute
    state_out: Any = None                 # ... and after it
    reported: dict = dataclasses.field(default_factory=dict)   # condition type -> reason last told by Event
    invalid_generation: int | None = None
    written: tuple[str, str, int] | None = None  # (kind, name, value) MESP last wrote and has not given back

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> "PolicyMemory":
        memory = cls()
        plan = status.get("plan")
        start = _parse_time(status.get("planStart"))
        computed = _parse_time(status.get("plannedAt"))
        if isinstance(plan, list) and all(isinstance(v, int) for v in plan) and start and computed:
            memory.plan, memory.plan_start, memory.planned_at = list(plan), int(start), computed
        memory.changed_at = _parse_time(status.get("lastChange"))
        kept = status.get("planState")
        if isinstance(kept, dict) and _parse_time(kept.get("minute")):
            try:
                from mesp_core.policy import PlanState

                memory.state_out = PlanState.single(int(kept["current"]), int(kept["minutesSinceNeeded"]))
                memory.state_minute = int(_parse_time(kept["minute"]))
            except (KeyError, TypeError, ValueError):
                memory.state_out = memory.state_minute = None
        memory.route = status.get("route") if isinstance(status.get("route"), dict) else None
        for cond in status.get("conditions") or []:
            if isinstance(cond, dict) and cond.get("status") == "False":
                memory.reported[cond.get("type")] = cond.get("reason")
        return memory


@dataclasses.dataclass
class Outcome:
    """Everything decided for one policy in one loop, applied by a worker thread."""

    policy: PolicyObject
    spec: PolicySpec | None = None
    service: kn.ServiceInfo | None = None
    conditions: dict = dataclasses.field(default_factory=dict)   # type -> (status, reason, message)
    plan: list[int] | None = None
    plan_start: int | None = None
    value: int | None = None          # the min-scale the plan asks for now
    floor: int = 0
    cap: int | None = None
    capacity: float | None = None
    capacity_source: str | None = None  # spec | requestDurationMs | measuredDuration | defaultDuration
    duration_ms: float | None = None    # the request duration the capacity was derived from
    plan_source: str = "none"         # fresh | held | floor
    reasons: list = dataclasses.field(default_factory=list)

    def set(self, type_: str, ok: bool, reason: str, message: str) -> None:
        self.conditions[type_] = ("True" if ok else "False", reason, message)


@dataclasses.dataclass
class LoopReport:
    policies: int = 0
    planned: int = 0
    actuated: int = 0
    failed: int = 0
    duration: float = 0.0
    phases: dict = dataclasses.field(default_factory=dict)   # seconds per phase: fetch, model, plan, write
    states: dict = dataclasses.field(default_factory=dict)


def _override_key(policy: PolicyObject) -> tuple[str, str, str]:
    """Fetch key of a policy's own PromQL: three parts, so it never meets a (namespace, Service) key
    of the batched query (a policy may share its name with another policy's Service)."""
    return ("policy", policy.namespace, policy.name)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


# Used when a policy names neither capacityPerInstance nor requestDurationMs and Prometheus has no
# latency for the Service yet (no requests in the last hour).
DEFAULT_REQUEST_DURATION_MS = 1000.0


def resolve_capacity(spec_capacity: float | None, spec_duration_ms: float | None, measured_duration_ms: float | None,
                     container_concurrency: int | None, autoscaling_target: float | None) -> tuple[float, str, float | None]:
    """Invocations per minute one instance serves, where the figure came from, and the duration used.

    Precedence: the policy's capacityPerInstance; else Knative's concurrency (containerConcurrency,
    or the autoscaling target when that is 0 = unlimited) with the policy's requestDurationMs, the
    mean duration Prometheus measured over the last hour, or DEFAULT_REQUEST_DURATION_MS, in that order.
    """
    from mesp_core.policy import capacity_from_concurrency

    if spec_capacity is not None:
        return float(spec_capacity), "spec", None
    if spec_duration_ms is not None:
        duration, source = float(spec_duration_ms), "requestDurationMs"
    elif measured_duration_ms is not None:
        duration, source = float(measured_duration_ms), "measuredDuration"
    else:
        duration, source = DEFAULT_REQUEST_DURATION_MS, "defaultDuration"
    concurrency = container_concurrency or 0
    if concurrency == 0:
        concurrency = int(autoscaling_target or 0)
    return capacity_from_concurrency(concurrency, duration), source, duration


def damp_template_change(current: int, wanted: int, floor: int, cap: int, minutes_since_change: float,
                         cooldown: int, hysteresis: int, raise_headroom: float = 0.0) -> tuple[int, str]:
    """What to write into a Service template, where every change is a rollout (a new Revision).

    Raises are applied with headroom, the larger of `hysteresis` instances and `raise_headroom`
    times the wanted value, so the next rises of a ramp need no new Revision (per-function
    quantiles widen only as a ramp shows in the function's own errors); a raise of at most
    `hysteresis` waits for the cooldown. Decreases wait for the cooldown and must exceed the
    hysteresis (unless they go down to the user's floor).
    """
    wanted = min(max(wanted, floor), cap)
    if not floor <= current <= cap:  # the floor or cap moved past what is set: bounds come before damping
        return wanted, f"set {wanted}: {current} is outside [{floor}, {cap}]"
    if wanted > current:
        if wanted - current <= hysteresis and minutes_since_change < cooldown:
            return current, f"hold {current}: raise to {wanted} is within the hysteresis during the cooldown"
        target = min(wanted + max(hysteresis, math.ceil(wanted * raise_headroom)), cap)
        return target, f"raise to {target} ({wanted} + {target - wanted} headroom)"
    if wanted < current:
        if minutes_since_change < cooldown:
            return current, f"hold {current}: template cooldown ({minutes_since_change:.0f}/{cooldown} min)"
        if current - wanted <= hysteresis and wanted > floor:
            return current, f"hold {current}: decrease to {wanted} is within the hysteresis"
        return wanted, f"lower to {wanted}"
    return current, f"keep {current}"


# ---------------------------------------------------------------------------------------------- loop
def model_context_minutes(manifest: Mapping[str, Any] | None) -> int:
    """History the model can use: the widest expert input in the artifact, at least one day
    (the router compares daily shapes; a daily seasonal expert needs more)."""
    widest = 1440

    def visit(node):
        nonlocal widest
        if isinstance(node, Mapping):
            size = node.get("input_size")
            if isinstance(size, int) and not isinstance(size, bool):
                widest = max(widest, size)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(manifest or {})
    return min(widest, 14 * 1440)


class Reconciler:
    """Runs the batched loop. `model` follows mesp_core's model interface (forecast_distribution,
    explain_routes); `clock` is injectable so tests can walk through a backfilled day."""

    def __init__(self, settings: OperatorSettings, model, source, knative: kn.KnativeClient, store: PolicyStore,
                 metrics: OperatorMetrics | None = None, clock: Callable[[], float] = time.time,
                 model_description: str = ""):
        self.settings = settings
        self.model = model
        self.source = source
        self.knative = knative
        self.store = store
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self.model_description = model_description or "model loaded"
        self.memory: dict[str, PolicyMemory] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.write_concurrency,
                                                          thread_name_prefix="mesp-write")
        self._support: tuple[bool, str] | None = None
        self._support_checked = 0.0
        self._phases: dict = {}
        # One lock per policy: a deletion's restore and a loop's write never interleave.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._deleted: set[str] = set()
        self.context_minutes = int(settings.context_minutes or model_context_minutes(getattr(model, "manifest", {})))

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    # -- the loop ---------------------------------------------------------------------------------
    def run_once(self, policies: Iterable[PolicyObject], services: Mapping[tuple[str, str], kn.ServiceInfo],
                 revisions: Mapping[tuple[str, str], kn.RevisionInfo]) -> LoopReport:
        started = time.monotonic()
        now = self.clock()
        policies = list(policies)
        # A policy being deleted still holds its Service until its restore is done.
        leaving = [p for p in policies if p.deleting]
        policies = [p for p in policies if not p.deleting]
        outcomes: list[Outcome] = []
        planning: list[Outcome] = []
        for policy in policies:
            memory = self.memory.get(policy.uid)
            if memory is None:
                memory = self.memory[policy.uid] = PolicyMemory.from_status(policy.status)
            outcome = Outcome(policy)
            outcome.set("ModelLoaded", True, "Loaded", self.model_description)
            outcomes.append(outcome)
            try:
                outcome.spec = parse_spec(policy.spec, self.settings)
            except PolicyError as exc:
                outcome.set("Ready", False, "InvalidSpec", str(exc))
                continue
            if outcome.spec.mode == "Off":
                outcome.set("Ready", True, "Off", "policy is off; the user's own min-scale is in place")
                continue
            outcome.service = services.get((policy.namespace, outcome.spec.service))
            if outcome.service is None:
                outcome.set("Ready", False, "ServiceNotFound",
                            f"Knative Service {policy.namespace}/{outcome.spec.service} not found")
                continue
            planning.append(outcome)

        report = LoopReport(policies=len(outcomes))
        self._phases = report.phases
        self._plan(planning, revisions, now, leaving)
        write_started = time.monotonic()
        futures = [self.pool.submit(self._settle, o, revisions, now) for o in outcomes]
        for outcome, future in zip(outcomes, futures):
            try:
                state = future.result()
            except Exception as exc:  # _settle reports its own errors; this is the last guard
                self._count_error(classify(exc))
                log.exception("policy %s/%s: unexpected failure", *outcome.policy.key)
                state = "Error"
            report.states[state] = report.states.get(state, 0) + 1
            report.planned += outcome.plan_source == "fresh"
            report.actuated += state == "Actuated"
            report.failed += state in ("Error", "InvalidSpec")
        report.phases["write"] = time.monotonic() - write_started
        self._forget_deleted({p.uid for p in policies}, {p.key for p in policies})
        report.duration = time.monotonic() - started
        self.metrics.loop_duration.observe(report.duration)
        self.metrics.loops.inc()
        for state in ("Actuated", "Planned", "Off", "Error", "InvalidSpec", "Waiting"):
            self.metrics.policies.labels(state).set(report.states.get(state, 0))
        return report

    def _one_writer_per_service(self, planning: list[Outcome], leaving: list[PolicyObject]) -> list[Outcome]:
        """Two Active policies on one Service would each take the other's writes for the user's and
        ratchet each other's floor: the oldest valid one writes (one being deleted keeps the Service
        until it has given the user's value back), the others are told and give back what they set."""
        candidates = [(o.policy, o.spec) for o in planning if o.spec.mode == "Active"]
        for policy in leaving:
            try:
                spec = parse_spec(policy.spec, self.settings)
            except PolicyError:
                continue
            if spec.mode == "Active" and OriginalRecord.from_annotations(policy.annotations) is not None:
                candidates.append((policy, spec))
        owners: dict[tuple[str, str], PolicyObject] = {}
        for policy, spec in sorted(candidates, key=lambda c: (c[0].created, c[0].name)):
            owners.setdefault((policy.namespace, spec.service), policy)
        kept = []
        for o in planning:
            owner = owners.get((o.policy.namespace, o.spec.service))
            if o.spec.mode == "Active" and owner is not None and owner.uid != o.policy.uid:
                o.service = None  # settles like a policy without a Service: nothing written, own record restored
                o.set("Ready", False, "DuplicateTarget",
                      f"Knative Service {o.policy.namespace}/{o.spec.service} is already managed by MespPolicy "
                      f"{owner.name}{' (being deleted)' if owner.deleting else ''}; this one waits until that "
                      f"one is gone")
                continue
            kept.append(o)
        return kept

    def _forget_deleted(self, live_uids: set[str], live_keys: set) -> None:
        for uid in set(self.memory) - live_uids:
            del self.memory[uid]
        with self._locks_guard:
            for uid in set(self._locks) - live_uids:
                del self._locks[uid]
            self._deleted &= live_uids
        for key in self.metrics.known_policies() - live_keys:
            self.metrics.forget_policy(*key)

    # -- planning ---------------------------------------------------------------------------------
    def _floor_cap(self, outcome: Outcome, revisions, measured_ms: float | None = None) -> None:
        spec, svc, policy = outcome.spec, outcome.service, outcome.policy
        record = OriginalRecord.from_annotations(policy.annotations)
        target_annotations = svc.template_annotations
        if svc.latest_ready_revision:
            rev = revisions.get((policy.namespace, svc.latest_ready_revision))
            if rev is not None:
                target_annotations = rev.annotations
        if spec.min_scale is not None:
            floor = spec.min_scale
        elif record is not None:
            floor = kn.read_min_scale({record.key: record.value} if record.value is not None else {}) or 0
        else:
            floor = kn.read_min_scale(svc.template_annotations) or 0
        # The Service's own max-scale binds too: Knative refuses a min-scale above it.
        service_cap = kn.read_max_scale(target_annotations) or kn.read_max_scale(svc.template_annotations)
        caps = [c for c in (spec.max_scale, service_cap) if c]
        cap = max(min(caps) if caps else self.settings.max_scale_cap, floor, 1)
        outcome.floor, outcome.cap = floor, cap
        target = kn.read_scale(svc.template_annotations, kn.TARGET, kn.TARGET)  # used only when concurrency is 0
        outcome.capacity, outcome.capacity_source, outcome.duration_ms = resolve_capacity(
            spec.capacity, spec.request_duration_ms, measured_ms, svc.container_concurrency, target)

    def _plan(self, planning: list[Outcome], revisions, now: float, leaving: list[PolicyObject]) -> None:
        if not planning:
            return
        measured = self._measured_durations(planning, now)
        for outcome in planning:
            key = (outcome.policy.namespace, outcome.spec.service)
            self._floor_cap(outcome, revisions, measured.get(key))
        targets, overrides = [], {}
        for o in planning:
            if o.spec.promql:
                try:
                    overrides[_override_key(o.policy)] = render_override(o.spec.promql, o.policy.namespace,
                                                                         o.spec.service)
                except PolicyError as exc:
                    o.set("Ready", False, "InvalidSpec", str(exc))
                    o.spec = None
            else:
                targets.append((o.policy.namespace, o.spec.service))
        planning = [o for o in planning if o.spec is not None]
        t = time.monotonic()
        fetch = self.source.fetch(targets, overrides, now=now, window_minutes=self.context_minutes)
        self._phases["fetch"] = time.monotonic() - t
        self.metrics.metrics_available.set(0 if fetch.errors and len(fetch.errors) >= len(planning) else 1)

        fresh: list[tuple[Outcome, np.ndarray]] = []
        for o in planning:
            key = _override_key(o.policy) if o.spec.promql else (o.policy.namespace, o.spec.service)
            error = fetch.errors.get(key)
            if error is None:
                o.set("MetricsAvailable", True, "Fetched", f"{self.context_minutes} minutes of counts fetched")
                fresh.append((o, fetch.series[key]))
                continue
            info = classify(error)
            self._count_error(info)
            if isinstance(error, PolicyError):
                o.set("Ready", False, "InvalidSpec", info.message)
                o.spec = None
                continue
            reason = error.reason if isinstance(error, MetricsError) else "PrometheusUnavailable"
            o.set("MetricsAvailable", False, reason, info.message)
            self._hold_or_fall_back(o, now, reason)
        # Only now is it known which policies are valid (Prometheus judged their own PromQL).
        valid = [o for o in planning if o.spec is not None]
        writers = {id(o) for o in self._one_writer_per_service(valid, leaving)}
        fresh = [(o, series) for o, series in fresh if id(o) in writers]

        if fresh:
            try:
                self._forecast_and_plan(fresh, fetch.end, now)
            except Exception as exc:  # a model failure must not stop the loop: hold plans like a metrics outage
                info = classify(exc)
                self._count_error(dataclasses.replace(info, kind="model"))
                log.exception("model batch failed")
                for o, _ in fresh:
                    o.set("ModelLoaded", False, "ForecastFailed", info.message)
                    self._hold_or_fall_back(o, now, "ForecastFailed")

    def _measured_durations(self, planning: list[Outcome], now: float) -> dict:
        """Mean request durations (ms) for Services whose policy names neither capacity nor duration.
        Optional information: a failure is logged and counted, and capacity falls back to the default."""
        wanted = [(o.policy.namespace, o.spec.service) for o in planning
                  if o.spec.capacity is None and o.spec.request_duration_ms is None]
        if not wanted:
            return {}
        t = time.monotonic()
        try:
            result = self.source.mean_durations(wanted, now=now)
        except Exception as exc:  # the source reports its errors; this is the last guard
            result = None
            error = exc
        else:
            error = result.error
        self._phases["durations"] = time.monotonic() - t
        if error is not None:
            self._count_error(classify(error))
            log.warning("request durations not available (capacity uses the last known or default): %s", error)
        return {} if result is None else result.durations_ms

    def _hold_or_fall_back(self, o: Outcome, now: float, reason: str) -> None:
        memory = self.memory[o.policy.uid]
        age = None if memory.planned_at is None else now - memory.planned_at
        if memory.plan and age is not None and age <= self.settings.stale_plan_seconds:
            index = int((int(now // STEP_SECONDS) * STEP_SECONDS - memory.plan_start) // STEP_SECONDS)
            rest = memory.plan[max(index, 0):]
            if rest:
                o.plan, o.plan_start = rest, memory.plan_start + max(index, 0) * STEP_SECONDS
                o.value = min(max(rest[0], o.floor), o.cap)
                o.plan_source = "held"
                o.reasons = [f"holding the plan from {_iso(memory.planned_at)} ({reason})"]
                return
        o.plan, o.plan_start, o.value, o.plan_source = None, None, o.floor, "floor"
        o.reasons = [f"no usable plan ({reason}): falling back to the user's floor {o.floor}"]

    def _forecast_and_plan(self, fresh: list[tuple[Outcome, np.ndarray]], end: int, now: float) -> None:
        from mesp_core.policy import PlanState, PolicyConfig, plan_min_scale

        configs = []
        for o, _ in fresh:
            template = self._plans_for_template(o.spec)
            cooldown = o.spec.template_cooldown if template else o.spec.cooldown
            configs.append(PolicyConfig(
                capacity_per_instance=o.capacity,
                lead_minutes=o.spec.lead,
                # Template changes cost a rollout each: one raise covers the whole cooldown ahead.
                hold_minutes=max(o.spec.hold, cooldown) if template else o.spec.hold,
                user_min_scale=o.floor,
                max_scale=o.cap,
                scale_down_hysteresis=o.spec.template_hysteresis if template else o.spec.hysteresis,
                cooldown_minutes=cooldown,
                quantile=o.spec.quantile,
            ))
        contexts = np.stack([series for _, series in fresh]).astype(np.float32)
        t = time.monotonic()
        routes = self.model.explain_routes(contexts)
        # One model run per (approach, forecast length); every quantile is derived from that run.
        groups: dict[tuple[str, int], list[int]] = {}
        for i, ((o, _), config) in enumerate(zip(fresh, configs)):
            groups.setdefault((o.spec.approach, o.spec.horizon + config.lookahead), []).append(i)
        point = [None] * len(fresh)
        upper = [None] * len(fresh)
        switched = [False] * len(fresh)
        for (approach, length), members in groups.items():
            distribution = self.model.forecast_distribution(contexts[members], horizon=length, approach=approach)
            by_quantile: dict[float | None, list[int]] = {}
            for j, i in enumerate(members):
                point[i] = distribution.point[j]
                switched[i] = bool(distribution.switched[j])
                by_quantile.setdefault(configs[i].quantile, []).append(j)
            for q, rows in by_quantile.items():
                quant = None if q is None else distribution.quantile(q)
                for j in rows:
                    upper[members[j]] = None if quant is None else quant[j]

        self._phases["model"] = time.monotonic() - t
        t = time.monotonic()
        plan_start = end  # column 0: the minute that starts at the newest complete minute's end
        # Policies with the same knobs (and horizon) are planned together: one vectorised call each.
        by_config: dict[tuple, list[int]] = {}
        for i, ((o, _), config) in enumerate(zip(fresh, configs)):
            by_config.setdefault((config, o.spec.horizon, upper[i] is None), []).append(i)
        for (config, horizon, no_upper), members in by_config.items():
            states = [self._previous_state(fresh[i][0], self.memory[fresh[i][0].policy.uid], plan_start, now)
                      for i in members]
            previous = PlanState(current=np.concatenate([st.current for st in states]),
                                 minutes_since_needed=np.concatenate([st.minutes_since_needed for st in states]))
            points = np.stack([point[i] for i in members])
            uppers = None if no_upper else np.stack([upper[i] for i in members])
            plans, reasons = plan_min_scale(points, uppers, config, previous, plan_horizon=horizon)
            # The state after the first minute carries hysteresis/cooldown into the next loop.
            _, _, after_first = plan_min_scale(points, uppers, config, previous, plan_horizon=1, explain=False,
                                               return_state=True)
            for row, i in enumerate(members):
                o = fresh[i][0]
                memory = self.memory[o.policy.uid]
                memory.state_minute, memory.state_in = plan_start, states[row]
                memory.state_out = PlanState.single(int(after_first.current[row]),
                                                    int(after_first.minutes_since_needed[row]))
                o.plan = [int(v) for v in plans[row]]
                o.reasons = [text for _, text in reasons[row][:3]]
        for i, ((o, _), config) in enumerate(zip(fresh, configs)):
            memory = self.memory[o.policy.uid]
            o.plan_start = plan_start
            o.value = o.plan[0]
            o.plan_source = "fresh"
            sizing = upper[i] if upper[i] is not None else point[i]
            memory.plan, memory.plan_start, memory.planned_at = o.plan, plan_start, now
            memory.forecast_next = float(sizing[0])
            memory.forecast_peak = float(np.max(sizing[: o.spec.horizon]))
            memory.route = {k: routes[i][k] for k in ("cluster", "expert", "description", "distance")}
            memory.route["distance"] = round(float(memory.route["distance"]), 4)
            if switched[i]:  # the routed expert lost to repeat-last-hour on this function's last hour
                memory.route["expert"] = f"repeat_last_hour (recent-error check; routed to {routes[i]['expert']})"
            self.metrics.forecast_next.labels(*o.policy.key).set(memory.forecast_next)
            self.metrics.forecast_peak.labels(*o.policy.key).set(memory.forecast_peak)
            self.metrics.set_expert(o.policy.namespace, o.policy.name, str(memory.route["cluster"]),
                                    str(memory.route["expert"]))
        self._phases["plan"] = time.monotonic() - t

    def _previous_state(self, o: Outcome, memory: PolicyMemory, plan_start: int, now: float):
        """The policy's PlanState entering minute `plan_start` (see mesp_core.policy.PlanState)."""
        from mesp_core.policy import PlanState

        if memory.state_minute == plan_start and memory.state_in is not None:  # same minute planned again
            return memory.state_in
        if memory.state_minute is not None and memory.state_out is not None and plan_start > memory.state_minute:
            skipped = (plan_start - memory.state_minute) // STEP_SECONDS - 1  # loops missed in between
            return PlanState(current=memory.state_out.current.copy(),
                             minutes_since_needed=memory.state_out.minutes_since_needed + max(skipped, 0))
        # First plan since start-up: continue from what is applied, aged by its last change.
        applied = o.policy.status.get("appliedMinScale")
        current = applied if o.spec.mode == "Active" and isinstance(applied, int) else o.floor
        since = 10**9 if memory.changed_at is None else max(1, int((now - memory.changed_at) // 60))
        return PlanState(current=np.array([max(current, o.floor)], dtype=np.int64),
                         minutes_since_needed=np.array([since], dtype=np.int64))

    # -- actuation --------------------------------------------------------------------------------
    def _actuation_for(self, spec: PolicySpec) -> tuple[str, str]:
        if spec.actuation == "Revision":
            return "Revision", "spec.actuation is Revision"
        if spec.actuation == "Template":
            return "Template", "spec.actuation is Template"
        forced = self.settings.revision_annotations
        if forced == "revision":
            return "Revision", "operator setting --revision-annotations=revision"
        if forced == "template":
            return "Template", "operator setting --revision-annotations=template"
        now = time.monotonic()
        if self._support is None or now - self._support_checked > SUPPORT_RECHECK_SECONDS:
            try:
                self._support = self.knative.revision_annotations_supported()
                self._support_checked = now
            except Exception:
                # A passing API error must not flip every policy to the other actuation (a rollout
                # each): keep the last answer and ask again next loop; with none yet, this write fails
                # and is retried.
                if self._support is None:
                    raise
        supported, why = self._support
        return ("Revision" if supported else "Template"), f"Auto: {why}"

    def _plans_for_template(self, spec: PolicySpec) -> bool:
        """Whether this policy's writes go to the Service template (planned with its damping).
        When Knative's version cannot be read yet, plan as for Revisions: the write reports the error."""
        try:
            return self._actuation_for(spec)[0] == "Template"
        except Exception:
            return False

    def _lock(self, uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    def _settle(self, o: Outcome, revisions, now: float) -> str:
        with self._lock(o.policy.uid):
            if o.policy.uid in self._deleted:  # deleted while this loop ran: its restore already happened
                return "Deleted"
            return self._settle_locked(o, revisions, now)

    def _settle_locked(self, o: Outcome, revisions, now: float) -> str:
        """Apply one policy's decision and write its status; every error ends up in status."""
        policy, memory = o.policy, self.memory[o.policy.uid]
        state = "Waiting"
        applied = policy.status.get("appliedMinScale") if isinstance(policy.status.get("appliedMinScale"), int) else None
        actuation = policy.status.get("actuation")
        actuation_reason = policy.status.get("actuationReason")
        record = OriginalRecord.from_annotations(policy.annotations)
        original_value = record.value if record else None
        applied = self._last_written(memory, record, applied)
        try:
            if o.spec is None:
                state = "InvalidSpec"
                if memory.invalid_generation != policy.generation:
                    memory.invalid_generation = policy.generation
                    self._event(policy, "Warning", "InvalidSpec", o.conditions["Ready"][2])
                if record is not None:  # no valid policy, no MESP value: the user's own is put back
                    self._give_back(policy, record, applied, memory, now)
                    record, applied, original_value = None, None, None
            elif o.spec.mode in ("Off", "ForecastOnly") or o.service is None:
                if record is not None:
                    self._give_back(policy, record, applied, memory, now)
                    record, applied, original_value = None, None, None
                if o.spec.mode == "Off":
                    state, actuation, actuation_reason = "Off", None, None
                elif o.service is not None:
                    state = "Planned"
                    o.set("Actuated", False, "ForecastOnly", "ForecastOnly: the plan is in status; nothing is patched")
                    o.set("Ready", True, "Planned" if o.plan_source == "fresh" else "Degraded",
                          "; ".join(o.reasons) or "planned")
                    actuation = None
            else:
                actuation, actuation_reason = self._actuation_for(o.spec)
                result = self._actuate(o, actuation, record, applied, revisions, now)
                state, applied, original_value = result
        except Exception as exc:
            info = classify(exc)
            self._count_error(info)
            state = "Error"
            o.set("Actuated", False, "RetryableError" if info.retryable else "PermanentError", info.message)
            o.set("Ready", False, "ActuationFailed", info.message)
            log.warning("policy %s/%s: %s", policy.namespace, policy.name, info.message)

        self._report_transitions(o, memory)
        if "Ready" not in o.conditions:
            o.set("Ready", o.plan_source == "fresh", "Degraded" if o.plan_source != "fresh" else "Ready",
                  "; ".join(o.reasons) or "no plan yet")
        status = self._status(o, memory, applied, original_value, actuation, actuation_reason, now)
        try:
            self.store.patch_status(policy, status)
        except Exception as exc:
            info = classify(exc)
            self._count_error(info)
            if info.kind != "api_not_found":  # deleted meanwhile: nothing to report to
                log.warning("policy %s/%s: status not written: %s", policy.namespace, policy.name, info.message)
        if o.value is not None and o.plan_source != "none":
            self.metrics.planned.labels(*policy.key).set(o.value)
        if applied is not None:
            self.metrics.applied.labels(*policy.key).set(applied)
        self.metrics.floor.labels(*policy.key).set(o.floor)
        return state

    def _actuate(self, o: Outcome, actuation: str, record, applied, revisions, now):
        policy, svc, memory = o.policy, o.service, self.memory[o.policy.uid]
        if actuation == "Revision":
            name = svc.latest_ready_revision
            if not name:
                o.set("Actuated", False, "NoReadyRevision", f"Service {svc.name} has no ready Revision yet")
                return "Waiting", applied, record.value if record else None
            known = revisions.get((policy.namespace, name))
            current = None
            if known is None:
                body = self.knative.get_revision(policy.namespace, name)
                known = kn.revision_info(body)
            annotations = known.annotations
        else:
            name, known, annotations = svc.name, svc, svc.template_annotations

        # A different target than the recorded one (new Revision, or mode switch): give the old one back.
        if record is not None and (record.kind, record.name) != ("Revision" if actuation == "Revision" else "Service", name):
            msg = self._restore(policy, record, applied)
            self._event(policy, "Normal", "MinScaleRestored", msg)
            record, applied, memory.written = None, None, None
        key = kn.min_scale_key(annotations)
        current = annotations.get(key)
        if record is None:
            unreadable = policy.annotations.get(ORIGINAL_ANNOTATION)
            if unreadable:  # edited by hand: what it held is lost, so say what is recorded instead
                self._event(policy, "Warning", "OriginalRecordUnreadable",
                            f"annotation {ORIGINAL_ANNOTATION} is not MESP's record ({unreadable[:200]!r}); "
                            f"recording the current min-scale {current or 'unset'} as the user's own")
            record = OriginalRecord("Revision" if actuation == "Revision" else "Service", name, key, current)
            self.store.set_original(policy, record)  # saved before the first write, so it can be restored
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
            value, why = damp_template_change(current_value if current_value is not None else o.floor, value,
                                              o.floor, o.cap, since, o.spec.template_cooldown,
                                              o.spec.template_hysteresis, o.spec.template_raise_headroom)
            o.reasons = [why] + o.reasons[:2]
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
            self._event(policy, "Normal", "MinScaleSet",
                        f"{target}: min-scale {result.previous or 'unset'} -> {value} ({why})")
        o.set("Actuated", True, "Applied", f"{target} has min-scale {value}")
        return "Actuated", value, record.value

    def _give_back(self, policy: PolicyObject, record: OriginalRecord, applied: int | None, memory: PolicyMemory,
                   now: float) -> None:
        """Restore the recorded min-scale (a policy that is off, invalid or without its Service) and say so."""
        msg = self._restore(policy, record, applied)
        self._event(policy, "Normal", "MinScaleRestored", msg)
        self.metrics.actuations.labels("restore").inc()
        memory.written, memory.changed_at = None, now

    @staticmethod
    def _last_written(memory: PolicyMemory | None, record: OriginalRecord | None, applied: int | None) -> int | None:
        """What MESP last wrote on the recorded object: this process's own write when it made one
        (the status that says so may have failed to be written), else the status's appliedMinScale."""
        if memory is not None and memory.written is not None and record is not None \
                and memory.written[:2] == (record.kind, record.name):
            return memory.written[2]
        return applied

    def _restore(self, policy: PolicyObject, record: OriginalRecord, applied: int | None) -> str:
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
        if record.kind == "Revision":
            self.knative.set_revision_min_scale(policy.namespace, record.name, record.value)
        else:
            self.knative.set_template_min_scale(policy.namespace, record.name, record.value)
        self.store.set_original(policy, None)
        return f"{record.kind} {record.name}: min-scale restored to {record.value or 'unset'}"

    def restore_policy(self, policy: PolicyObject) -> str | None:
        """For deletion: restore whatever the policy changed. Raises on retryable API errors."""
        with self._lock(policy.uid):
            self._deleted.add(policy.uid)
            # The watched body may predate the loop's last write: read the policy as it is now.
            try:
                policy = self.store.get(policy.namespace, policy.name)
            except Exception as exc:
                if classify(exc).kind != "api_not_found":
                    raise
            record = OriginalRecord.from_annotations(policy.annotations)
            self.metrics.forget_policy(*policy.key)
            if record is None:
                return None
            applied = policy.status.get("appliedMinScale")
            applied = self._last_written(self.memory.get(policy.uid), record, applied if isinstance(applied, int) else None)
            msg = self._restore(policy, record, applied)
            self.metrics.actuations.labels("restore").inc()
            return msg

    # -- reporting --------------------------------------------------------------------------------
    def _report_transitions(self, o: Outcome, memory: PolicyMemory) -> None:
        """One Event when a condition turns False (or its reason changes) and one when it recovers."""
        for type_ in ("MetricsAvailable", "ModelLoaded"):
            if type_ not in o.conditions:
                continue
            status, reason, message = o.conditions[type_]
            before = memory.reported.get(type_)
            if status == "False" and before != reason:
                memory.reported[type_] = reason
                detail = "; ".join(o.reasons)
                self._event(o.policy, "Warning", reason, f"{message}; {detail}" if detail else message)
            elif status == "True" and before is not None:
                memory.reported.pop(type_, None)
                self._event(o.policy, "Normal", f"{type_}Recovered", message)

    def _status(self, o: Outcome, memory: PolicyMemory, applied, original, actuation, actuation_reason,
                now: float) -> dict:
        previous = {c.get("type"): c for c in (o.policy.status.get("conditions") or []) if isinstance(c, dict)}
        conditions = []
        for type_ in CONDITION_TYPES:
            if type_ not in o.conditions:
                continue
            status, reason, message = o.conditions[type_]
            old = previous.get(type_) or {}
            since = old.get("lastTransitionTime") if old.get("status") == status else None
            conditions.append({"type": type_, "status": status, "reason": reason, "message": message[:1000],
                               "lastTransitionTime": since or _iso(now),
                               "observedGeneration": o.policy.generation})
        spec = o.spec
        status = {
            "observedGeneration": o.policy.generation,
            "conditions": conditions,
            "mode": spec.mode if spec else None,
            "actuation": actuation,
            "actuationReason": actuation_reason,
            "plan": o.plan,
            "planStart": _iso(o.plan_start),
            "plannedAt": _iso(memory.planned_at) if o.plan is not None else None,
            "planSource": o.plan_source,
            "planReasons": o.reasons[:3] or None,
            "route": memory.route if o.plan is not None else None,
            "forecastNextMinute": None if o.plan_source != "fresh" else round(memory.forecast_next, 3),
            "forecastPeak": None if o.plan_source != "fresh" else round(memory.forecast_peak, 3),
            "desiredMinScale": o.value,
            "appliedMinScale": applied,
            "originalMinScale": original,
            "userFloor": o.floor if spec else None,
            "maxScale": o.cap,
            "capacityPerInstance": None if o.capacity is None else round(o.capacity, 3),
            "capacitySource": o.capacity_source,
            "requestDurationMs": None if o.duration_ms is None else round(o.duration_ms, 1),
            "lastChange": _iso(memory.changed_at),
            # Hysteresis/cooldown state after the first planned minute: a restarted operator continues from it.
            "planState": None if memory.state_out is None else {
                "minute": _iso(memory.state_minute),
                "current": int(memory.state_out.current[0]),
                "minutesSinceNeeded": int(memory.state_out.minutes_since_needed[0])},
            "lastUpdate": _iso(now),
        }
        return status

    def _event(self, policy: PolicyObject, type_: str, reason: str, message: str) -> None:
        try:
            self.store.event(policy, type_, reason, message)
        except Exception as exc:  # an Event that cannot be posted must not undo the work
            self._count_error(classify(exc))
            log.warning("policy %s/%s: event %s not posted: %s", policy.namespace, policy.name, reason, exc)

    def _count_error(self, info: Classified) -> None:
        self.metrics.errors.labels(info.kind).inc()
