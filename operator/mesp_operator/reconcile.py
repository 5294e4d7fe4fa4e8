"""One loop over all MespPolicies: fetch counts -> forecast in one batch -> plan -> actuate -> report.

The loop only orchestrates: the spec is parsed in spec.py, the decisions are made in decisions.py,
users' Knative objects are written by actuation.py, MESP's own objects through store.py, and the
status is formatted in status.py. Nothing here imports kopf: the handlers feed this module plain views
of the watched objects, so the whole decision path runs (and is tested) against a real API server
without the framework.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable, Mapping

import numpy as np

from mesp_core.policy import PlanState
from mesp_operator import decisions
from mesp_operator import knative as kn
from mesp_operator.actuation import Actuator
from mesp_operator.errors import Classified, MetricsError, NotOwner, PolicyError, classify
from mesp_operator.forecast import floor_batch, forecast_batch, uses_floor_stage
from mesp_operator.metrics import OperatorMetrics
from mesp_operator.prometheus import render_override
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import PolicyObject, PolicySpec, parse_spec
from mesp_operator.status import (LoopReport, Outcome, build_status, format_time, memory_from_status, refresh_interval,
                                  status_is_news, transition_events)
from mesp_operator.store import OriginalRecord, PolicyMemory, PolicyStore

log = logging.getLogger("mesp.operator")

SUPPORT_RECHECK_SECONDS = 600.0


def _override_key(policy: PolicyObject) -> tuple[str, str, str]:
    """Fetch key of a policy's own PromQL: three parts, so it never meets a (namespace, Service) key
    of the batched query (a policy may share its name with another policy's Service)."""
    return ("policy", policy.namespace, policy.name)


class Reconciler:
    """Runs the batched loop. `model` follows mesp_core's model interface (forecast_distribution,
    explain_routes); `clock` is injectable so tests can walk through a backfilled day."""

    def __init__(self, settings: OperatorSettings, model, source, knative: kn.KnativeClient, store: PolicyStore,
                 metrics: OperatorMetrics | None = None, clock: Callable[[], float] = time.time,
                 model_description: str = "", owns: Callable[[PolicyObject], bool] | None = None):
        self.settings = settings
        # Whether this replica holds the policy's shard (sharding.ShardLeases.owns); asked before every write.
        self.owns = owns or (lambda policy: True)
        self.model = model
        self.source = source
        self.knative = knative
        self.store = store
        self.metrics = metrics or OperatorMetrics()
        self.actuator = Actuator(knative, store, self.metrics, self._event, guard=self._guard)
        self.clock = clock
        self.model_description = model_description or "model loaded"
        self.memory: dict[str, PolicyMemory] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.write_concurrency,
                                                          thread_name_prefix="mesp-write")
        self._support: tuple[bool, str] | None = None
        self._support_checked = 0.0
        self._phases: dict = {}
        # Seconds the write threads spent on each kind of write in this loop (summed over threads), and
        # how many statuses they wrote or left unchanged; both reset at the start of each loop.
        self._thread_seconds: dict[str, float] = {}
        self._status_counts: dict[str, int] = {}
        self._thread_seconds_guard = threading.Lock()
        # One lock per policy: a deletion's restore and a loop's write never interleave.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._deleted: set[str] = set()
        self.context_minutes = int(settings.context_minutes
                                   or decisions.model_context_minutes(getattr(model, "manifest", {})))

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
            if policy.uid not in self.memory:
                self.memory[policy.uid] = memory_from_status(policy.status)
            outcome = Outcome(policy)
            outcome.set("ModelLoaded", True, "Loaded", self.model_description)
            outcomes.append(outcome)
            try:
                outcome.spec = parse_spec(policy.spec, self.settings)
            except PolicyError as exc:
                outcome.set("Ready", False, "InvalidSpec", str(exc))
                continue
            outcome.sizing = decisions.sizing(outcome.spec, self.settings.cold_start_cost)
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
        report.phases["prepare"] = time.monotonic() - started
        self._plan(planning, revisions, now, leaving)
        write_started = time.monotonic()
        self._thread_seconds, self._status_counts = {"actuate": 0.0, "status": 0.0}, {"written": 0, "unchanged": 0}
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
        # Thread time inside the write phase (8 threads by default, so these may add up to more than "write").
        report.phases.update({f"{kind}_threads": seconds for kind, seconds in self._thread_seconds.items()})
        report.statuses_written, report.statuses_unchanged = self._status_counts["written"], self._status_counts["unchanged"]
        self._forget_deleted({p.uid for p in policies}, {p.key for p in policies})
        report.duration = time.monotonic() - started
        self.metrics.loop_duration.observe(report.duration)
        for phase, seconds in report.phases.items():
            self.metrics.loop_phase.labels(phase).set(seconds)
        self.metrics.loops.inc()
        for state in ("Actuated", "Planned", "Off", "Error", "InvalidSpec", "Waiting"):
            self.metrics.policies.labels(state).set(report.states.get(state, 0))
        return report

    def _one_writer_per_service(self, planning: list[Outcome], leaving: list[PolicyObject]) -> list[Outcome]:
        """Only one Active policy writes each Service (decisions.service_writers); one being deleted
        keeps the Service until it has given the user's value back. The others are told and give back
        what they set."""
        candidates = [(o.policy, o.spec) for o in planning if o.spec.mode == "Active"]
        for policy in leaving:
            try:
                spec = parse_spec(policy.spec, self.settings)
            except PolicyError:
                continue
            if spec.mode == "Active" and OriginalRecord.from_annotations(policy.annotations) is not None:
                candidates.append((policy, spec))
        owners = decisions.service_writers(candidates)
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
        outcome.floor, outcome.cap = decisions.floor_and_cap(
            spec.min_scale, spec.max_scale, None if record is None else record.min_scale(),
            svc.template_annotations, target_annotations, self.settings.max_scale_cap)
        outcome.cap_why = decisions.cap_reason(spec.max_scale, svc.template_annotations, target_annotations,
                                               outcome.cap)
        target = kn.read_scale(svc.template_annotations, kn.TARGET, kn.TARGET)  # used only when concurrency is 0
        outcome.capacity, outcome.capacity_source, outcome.duration_ms = decisions.resolve_capacity(
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
                via = f" ({fetch.preset})" if fetch.preset and not o.spec.promql else ""
                o.set("MetricsAvailable", True, "Fetched", f"{self.context_minutes} minutes of counts fetched{via}")
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
        held = decisions.held_plan(memory, now, self.settings.stale_plan_seconds)
        if held is None:
            o.plan, o.plan_start, o.value, o.plan_source = None, None, o.floor, "floor"
            o.reasons = [f"no usable plan ({reason}): falling back to the user's floor {o.floor}"]
            return
        o.plan, o.plan_start = held
        o.value = min(max(o.plan[0], o.floor), o.cap)
        o.plan_source = "held"
        o.reasons = [f"holding the plan from {format_time(memory.planned_at)} ({reason})"]

    def _forecast_and_plan(self, fresh: list[tuple[Outcome, np.ndarray]], end: int, now: float) -> None:
        learned = [uses_floor_stage(self.model, o.sizing) for o, _ in fresh]
        configs = [decisions.plan_config(o.spec, o.capacity, o.floor, o.cap, self._plans_for_template(o.spec),
                                         o.sizing, learned_floor=use) for (o, _), use in zip(fresh, learned)]
        t = time.monotonic()
        contexts = np.stack([series for _, series in fresh]).astype(np.float32)
        # Policies with the same approach and length share one model run, whatever their sizing.
        # The forecast still runs for floor-stage policies: their status shows its route and peak.
        forecast = forecast_batch(self.model, contexts,
                                  [(o.spec.approach, o.spec.horizon + config.lookahead, o.sizing)
                                   for (o, _), config in zip(fresh, configs)])
        # With a floor stage, cost-sized policies take their target instances from it (policies
        # with the same length, lead and cost share one call). Each keeps its floor choice until its
        # next reselect boundary (after a restart the memory has none: the choice is made again).
        floors = floor_batch(self.model, contexts,
                             [(o.spec.horizon + config.hold_minutes, config.lead_minutes, o.capacity, o.sizing)
                              for (o, _), config in zip(fresh, configs)],
                             minute=end // 60, keys=[o.policy.uid for o, _ in fresh],
                             records=[self.memory[o.policy.uid].floor_choice for o, _ in fresh])
        self._phases["model"] = time.monotonic() - t

        t = time.monotonic()
        plan_start = end  # column 0: the minute that starts at the newest complete minute's end
        states = [self._previous_state(o, plan_start, now) for o, _ in fresh]
        planned = decisions.plan_batch(forecast.point, forecast.upper, configs, [o.spec.horizon for o, _ in fresh],
                                       states, floors.targets)
        for i, ((o, _), (plan, reasons, after_first)) in enumerate(zip(fresh, planned)):
            memory = self.memory[o.policy.uid]
            memory.learned_floor = floors.names[i]  # None: sized from the forecast
            memory.floor_choice = floors.records[i]
            memory.state_minute, memory.state_in, memory.state_out = plan_start, states[i], after_first
            o.plan, o.reasons, o.plan_start, o.value, o.plan_source = plan, reasons, plan_start, plan[0], "fresh"
            sized_from = forecast.upper[i]
            memory.plan, memory.plan_start, memory.planned_at = o.plan, plan_start, now
            memory.forecast_next = float(sized_from[0])
            memory.forecast_peak = float(np.max(sized_from[: o.spec.horizon]))
            memory.route = {k: forecast.routes[i][k] for k in ("cluster", "expert", "description", "distance")}
            memory.route["distance"] = round(float(memory.route["distance"]), 4)
            self.metrics.forecast_next.labels(*o.policy.key).set(memory.forecast_next)
            self.metrics.forecast_peak.labels(*o.policy.key).set(memory.forecast_peak)
            self.metrics.set_expert(o.policy.namespace, o.policy.name, str(memory.route["cluster"]),
                                    str(memory.route["expert"]))
        self._phases["plan"] = time.monotonic() - t

    def _previous_state(self, o: Outcome, plan_start: int, now: float) -> PlanState:
        applied = o.policy.status.get("appliedMinScale")
        in_place = applied if o.spec.mode == "Active" and isinstance(applied, int) else None
        return decisions.previous_state(self.memory[o.policy.uid], plan_start, now, in_place, o.floor)

    # -- actuation --------------------------------------------------------------------------------
    def _actuation_for(self, spec: PolicySpec) -> tuple[str, str]:
        return decisions.choose_actuation(spec.actuation, self.settings.revision_annotations,
                                          self._revision_annotations_supported)

    def _revision_annotations_supported(self) -> tuple[bool, str]:
        """The cluster's answer (does it propagate Revision annotations?), asked again every
        SUPPORT_RECHECK_SECONDS."""
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
        return self._support

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

    def _guard(self, policy: PolicyObject) -> None:
        if not self.owns(policy):
            raise NotOwner(f"shard of MespPolicy {policy.namespace}/{policy.name} is no longer held by this replica")

    def _settle(self, o: Outcome, revisions, now: float) -> str:
        with self._lock(o.policy.uid):
            if o.policy.uid in self._deleted:  # deleted while this loop ran: its restore already happened
                return "Deleted"
            if not self.owns(o.policy):  # its shard moved to another replica while this loop ran
                return "NotOwned"
            try:
                return self._settle_locked(o, revisions, now)
            except NotOwner:
                return "NotOwned"

    def _settle_locked(self, o: Outcome, revisions, now: float) -> str:
        """Apply one policy's decision and write its status; every error ends up in status."""
        policy, memory = o.policy, self.memory[o.policy.uid]
        state = "Waiting"
        applied = policy.status.get("appliedMinScale") if isinstance(policy.status.get("appliedMinScale"), int) else None
        actuation = policy.status.get("actuation")
        actuation_reason = policy.status.get("actuationReason")
        record = OriginalRecord.from_annotations(policy.annotations)
        original_value = record.value if record else None
        applied = memory.last_written(record, applied)
        actuate_started = time.monotonic()
        try:
            if o.spec is None:
                state = "InvalidSpec"
                if memory.invalid_generation != policy.generation:
                    memory.invalid_generation = policy.generation
                    self._event(policy, "Warning", "InvalidSpec", o.conditions["Ready"][2])
                if record is not None:  # no valid policy, no MESP value: the user's own is put back
                    self.actuator.give_back(policy, record, applied, memory, now)
                    record, applied, original_value = None, None, None
            elif o.spec.mode in ("Off", "ForecastOnly") or o.service is None:
                if record is not None:
                    self.actuator.give_back(policy, record, applied, memory, now)
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
                result = self.actuator.apply(o, actuation, record, applied, memory, revisions, now)
                state, applied, original_value = result
        except NotOwner:
            raise  # another replica acts on it now: nothing more is written from here
        except Exception as exc:
            info = classify(exc)
            self._count_error(info)
            state = "Error"
            o.set("Actuated", False, "RetryableError" if info.retryable else "PermanentError", info.message)
            o.set("Ready", False, "ActuationFailed", info.message)
            log.warning("policy %s/%s: %s", policy.namespace, policy.name, info.message)

        self._add_thread_seconds("actuate", time.monotonic() - actuate_started)
        for event in transition_events(o, memory):
            self._event(policy, *event)
        if "Ready" not in o.conditions:
            o.set("Ready", o.plan_source == "fresh", "Degraded" if o.plan_source != "fresh" else "Ready",
                  "; ".join(o.reasons) or "no plan yet")
        status = build_status(o, memory, applied, original_value, actuation, actuation_reason, now)
        refresh = refresh_interval(policy.uid, self.settings.status_refresh_seconds)
        # A status that only moved with the clock is not written: the stored one still says the same.
        if state == "Error" or status_is_news(status, policy.status, now, refresh):
            self._write_status(policy, status)
        else:
            self._count_status("unchanged")
        self.metrics.set_policy(policy.key, o.value if o.plan_source != "none" else None, applied, o.floor)
        return state

    def _write_status(self, policy: PolicyObject, status: dict) -> None:
        self._guard(policy)
        started = time.monotonic()
        try:
            self.store.patch_status(policy, status)
        except Exception as exc:
            info = classify(exc)
            self._count_error(info)
            if info.kind != "api_not_found":  # deleted meanwhile: nothing to report to
                log.warning("policy %s/%s: status not written: %s", policy.namespace, policy.name, info.message)
        self._add_thread_seconds("status", time.monotonic() - started)
        self._count_status("written")

    def _add_thread_seconds(self, kind: str, seconds: float) -> None:
        with self._thread_seconds_guard:
            self._thread_seconds[kind] = self._thread_seconds.get(kind, 0.0) + seconds

    def _count_status(self, result: str) -> None:
        """One policy's status this loop: "written" or "unchanged" (no news)."""
        with self._thread_seconds_guard:
            self._status_counts[result] = self._status_counts.get(result, 0) + 1
        self.metrics.status_writes.labels(result).inc()

    def restore_policy(self, policy: PolicyObject) -> str | None:
        """For deletion: restore whatever the policy changed. Raises on retryable API errors."""
        with self._lock(policy.uid):
            self._guard(policy)
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
            applied = applied if isinstance(applied, int) else None
            memory = self.memory.get(policy.uid)
            if memory is not None:
                applied = memory.last_written(record, applied)
            msg = self.actuator.restore(policy, record, applied)
            self.metrics.actuations.labels("restore").inc()
            return msg

    # -- reporting --------------------------------------------------------------------------------
    def _event(self, policy: PolicyObject, type_: str, reason: str, message: str) -> None:
        try:
            self.store.event(policy, type_, reason, message)
        except Exception as exc:  # an Event that cannot be posted must not undo the work
            self._count_error(classify(exc))
            log.warning("policy %s/%s: event %s not posted: %s", policy.namespace, policy.name, reason, exc)

    def _count_error(self, info: Classified) -> None:
        self.metrics.errors.labels(info.kind).inc()
