"""Shared helpers of the Knative suite. Test modules import from here, never from conftest (tests/unit
and tests/integration have a conftest too, and `from conftest import ...` finds whichever came first)."""

from __future__ import annotations

import importlib.util
import math
import time
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the integration suite's helpers (wait_for, Knative constants), shared read-only
sys.path.insert(0, str(REPO / "tests" / "integration"))

from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

import kube_helpers as kh  # noqa: E402

# Figures measured by the tests (seconds), printed at the end of the run and kept in the bed's
# work directory as timings.json.
TIMINGS: dict[str, float] = {}


def load_bed_module():
    """hack/knative-bed.py, loaded once."""
    module = sys.modules.get("mesp_knative_bed")
    if module is None:
        spec = importlib.util.spec_from_file_location("mesp_knative_bed", REPO / "hack" / "knative-bed.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["mesp_knative_bed"] = module
        spec.loader.exec_module(module)
    return module


def ready(obj: dict | None) -> bool:
    return bool(obj) and any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in (obj.get("status") or {}).get("conditions") or [])


TRACE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
MINUTES_BEFORE_PEAK = 12  # where the replayed day's history ends when the bed starts
# The Services whose real day Prometheus holds (the same day for each), by scenario.
# Knative 1.20's bed (tests/knative/test_knative_1_20.py) holds this one.
REPLAYED_1_20 = ("kn-auto-120", "peak")
REPLAYED = {"revision": ("kn-revision", "peak"), "template": ("kn-template", "peak-tpl"),
            "forecast": ("kn-forecast", "fo"), "capped": ("kn-capped", "capped"),
            "outage": ("kn-outage", "outage"), "rollout": ("kn-rollout", "roll"),
            "user-floor": ("kn-user-floor", "uf"), "legacy-key": ("kn-legacy-key", "legacy"),
            "activation": ("kn-activation", "act"), "refused": ("kn-refused", "refused")}
# The Service whose real day is wholly in the past on the package's bed (peak AFTER_PEAK minutes
# before its start), for the operator on a replayed clock.
REPLAYED_PAST = ("kn-after-peak", "after")
AFTER_PEAK = 60   # the replayed-clock walk goes 50 minutes past the peak, inside the history


def integration_conftest():
    """tests/integration/conftest.py as a plain module (its real-data helpers, read-only); imported
    under its own name, so it is not the `conftest` module pytest registered."""
    module = sys.modules.get("mesp_integration_conftest")
    if module is None:
        spec = importlib.util.spec_from_file_location("mesp_integration_conftest",
                                                      REPO / "tests" / "integration" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["mesp_integration_conftest"] = module
        spec.loader.exec_module(module)
    return module


class Replay:
    """One real function-day of the Azure sample, placed in time: two copies of the day, as
    Prometheus would have kept them, whose minute at `now` (the bed's start) is MINUTES_BEFORE_PEAK
    minutes before the second copy's peak (the replayed peak is that far ahead of the bed's start),
    or `after_peak` minutes after it (the whole peak is in the past, for an operator on a replayed
    clock; its history ends at `now`).

    Ahead of the peak the day goes on past `now` to its end: Prometheus holds those samples from the
    start and serves each once the wall clock reaches it, so a scenario that starts minutes after
    the bed sees the day's next minutes as they happen, not a silence the real function never had
    (a floor policy chosen at a reselect boundary before the silence planned nothing for it)."""

    def __init__(self, day, peak_minute: int, now: float, after_peak: int | None = None):
        import numpy as np

        self.day, self.peak_minute = np.asarray(day, dtype=float), int(peak_minute)
        self.now = int(now // 60) * 60
        self.counts = np.tile(self.day, 2)
        # minute index that ends at `now`
        self.now_index = 1440 + self.peak_minute + (-MINUTES_BEFORE_PEAK if after_peak is None else after_peak)
        self.last_index = len(self.counts) - 1 if after_peak is None else self.now_index  # the history's last minute
        self.peak_at = self.time_of(1440 + self.peak_minute)

    def time_of(self, index: int) -> int:
        """Unix time at the end of minute `index` of the tiled days."""
        return self.now - (self.now_index - index) * 60

    def peak_count(self) -> float:
        return float(self.day[self.peak_minute - 5: self.peak_minute + 5].mean())

    def write_openmetrics(self, path: Path, services: list[tuple[str, str]], duration_s: float = 0.2) -> None:
        write_history(path, [(self, service) for service in services], duration_s)


def write_history(path: Path, placed: list[tuple[Replay, tuple[str, str]]], duration_s: float = 0.2) -> None:
    """The series Knative 1.21's queue-proxy exports (OpenTelemetry layout, what MESP's knative-otel
    preset reads) for each (Replay, (namespace, service)): per scrape target
    kn_serving_invocation_duration_seconds_{count,sum}, and target_info naming the target's
    namespace, Service and Revision. Counters are sampled every 15 s, each minute's increase the
    real count of that minute."""
    targets = [f'job="queue-proxy",instance="10.244.250.{i + 1}:9091"' for i in range(len(placed))]
    lines = []
    for suffix, per_request in (("count", 1.0), ("sum", duration_s)):
        name = f"kn_serving_invocation_duration_seconds_{suffix}"
        lines.append(f"# TYPE {name} unknown")
        for target, (replay, _) in zip(targets, placed):
            start = replay.time_of(0) - 60
            total = 0.0
            lines.append(f"{name}{{{target}}} 0 {start}")
            for m in range(replay.last_index + 1):
                c = replay.counts[m] * per_request
                for k in range(4):
                    lines.append(f"{name}{{{target}}} {total + c * (k + 1) / 4:.3f} {start + m * 60 + (k + 1) * 15}")
                total += c
    lines.append("# TYPE target_info unknown")
    for target, (replay, (namespace, service)) in zip(targets, placed):
        labels = (f'{target},k8s_namespace_name="{namespace}",kn_service_name="{service}",'
                  f'kn_revision_name="{service}-00001"')
        for t in range(replay.time_of(0) - 60, replay.time_of(replay.last_index) + 1, 15):
            lines.append(f"target_info{{{labels}}} 1 {t}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


# -------------------------------------------------------------------- scenario helpers (any bed)
def image(service: str) -> str:
    """The container image of a test Service: on the bed a dev.local name no one pulls (KWOK runs
    no containers); on a real cluster MESP_KNATIVE_IMAGE (hack/e2e-kind.sh: Knative's autoscale-go)."""
    import os

    return os.environ.get("MESP_KNATIVE_IMAGE") or f"dev.local/mesp/{service}:1"


PA = ("autoscaling.internal.knative.dev", "v1alpha1")
MAX_SCALE = "autoscaling.knative.dev/max-scale"
MIN_SCALE_LEGACY = "autoscaling.knative.dev/minScale"   # the older spelling Knative still accepts
ACTIVATION_SCALE = "autoscaling.knative.dev/activation-scale"
INITIAL_SCALE = "autoscaling.knative.dev/initial-scale"
USER_FLOOR = 2


class Kn:
    """One Knative Service of a scenario and what Knative made of it."""

    def __init__(self, kube, namespace: str, service: str):
        self.kube, self.ns, self.service = kube, namespace, service

    def create(self, annotations: dict) -> "Kn":
        kh.create(self.kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}})
        kh.custom(self.kube).create_namespaced_custom_object(*kh.KN, self.ns, "services", {
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": self.service, "namespace": self.ns},
            "spec": {"template": {"metadata": {"annotations": annotations},
                                  "spec": {"containers": [{"image": image(self.service)}]}}}})
        kh.wait_for(lambda: ready(self.get(kh.KN, "revisions", self.latest() or "-")), 120,
                 message=f"{self.ns}/{self.service}: a Ready Revision")
        return self

    def get(self, group_version, plural: str, name: str) -> dict | None:
        try:
            return kh.custom(self.kube).get_namespaced_custom_object(*group_version, self.ns, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def latest(self) -> str | None:
        return ((self.get(kh.KN, "services", self.service) or {}).get("status") or {}).get("latestReadyRevisionName")

    def revisions(self) -> list[str]:
        items = kh.custom(self.kube).list_namespaced_custom_object(*kh.KN, self.ns, "revisions")["items"]
        return sorted(r["metadata"]["name"] for r in items)

    def min_scale(self, group_version, plural: str, name: str, key: str = kh.MIN_SCALE) -> str | None:
        obj = self.get(group_version, plural, name) or {}
        return (obj.get("metadata", {}).get("annotations") or {}).get(key)

    def annotations(self, group_version, plural: str, name: str) -> dict:
        return ((self.get(group_version, plural, name) or {}).get("metadata") or {}).get("annotations") or {}

    def scale(self, revision: str) -> tuple[int | None, int]:
        """(spec.replicas, ready pods) of the Revision's Deployment."""
        try:
            dep = client.AppsV1Api(self.kube).read_namespaced_deployment(f"{revision}-deployment", self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None, 0
            raise
        return dep.spec.replicas, dep.status.ready_replicas or 0

    def wait_knative_at(self, revision: str, floor: int, timeout: float = 60, key: str = kh.MIN_SCALE) -> None:
        """min-scale `floor` on the Revision's PodAutoscaler, and that many Ready pods."""
        kh.wait_for(lambda: self.min_scale(PA, "podautoscalers", revision, key) == str(floor), timeout,
                    message=f"min-scale {floor} on PodAutoscaler {self.ns}/{revision}")
        kh.wait_for(lambda: self.scale(revision) == (floor, floor), timeout,
                    message=f"{floor} Ready pods of {self.ns}/{revision}")


def policy(replay, **spec) -> dict:
    # Sized so that the replayed peak needs about 8 instances.
    base = {"mode": "Active", "actuation": "Auto", "capacityPerInstance": math.ceil(replay.peak_count() / 8),
            "leadMinutes": 15, "holdMinutes": 2, "horizonMinutes": 30, "maxScale": 30}
    return {**base, **spec}


def start_operator(mesp_operator, ns: str):
    # The default metrics preset (auto) finds Knative 1.21's OpenTelemetry family in Prometheus.
    return mesp_operator(ns, "--loop-interval-seconds", "2")


def wait_applied(kube, ns: str, name: str, log, above: int = USER_FLOOR, timeout: float = 180) -> int:
    def applied():
        value = kh.status(kube, ns, name).get("appliedMinScale")
        return value if value and value > above else None

    return kh.wait_for(applied, timeout, interval=0.5, message=f"MESP applying a floor above {above} (log: {log})")


class Sampler:
    """Reads a value every `interval` seconds in the background (for flapping checks)."""

    def __init__(self, read, interval: float = 0.25):
        import threading

        self.read, self.interval, self.values = read, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.values.append(self.read())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def changes(self) -> list:
        out = []
        for v in self.values:
            if not out or out[-1] != v:
                out.append(v)
        return out


class Timeline:
    """What the loop did, sampled every `interval` seconds in the background while a scenario runs:
    MESP's plan and applied floor (the policy's status), min-scale on the Service's latest ready
    Revision, its PodAutoscaler's desired scale and its Deployment's replicas. `save` writes it with
    the replayed traffic around the peak as JSON, for hack/plot-knative-timeline.py (docs/knative-loop.md)."""

    def __init__(self, kn: Kn, policy_name: str, replay, interval: float = 0.5, clock=None):
        """`clock(wall_time)`: the operator's replayed clock, when it runs on one (samples get its time too)."""
        import threading

        self.kn, self.policy_name, self.replay, self.interval = kn, policy_name, replay, interval
        self.clock = clock
        self.samples: list[dict] = []
        self.plans: dict[str, list[int]] = {}   # planStart -> plan, each distinct plan once
        self.marks: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def mark(self, label: str) -> None:
        self.marks.append((time.time(), label))

    def _sample(self) -> dict:
        kn, now = self.kn, time.time()
        revision = kn.latest()
        pa = (kn.get(PA, "podautoscalers", revision) or {}) if revision else {}
        replicas, ready_pods = kn.scale(revision) if revision else (None, 0)
        st = kh.status(kn.kube, kn.ns, self.policy_name)  # {} once the policy is gone
        if st.get("plan") and st.get("planStart"):
            self.plans[st["planStart"]] = st["plan"]
        return {"t": round(now, 2), "sim": None if self.clock is None else round(self.clock(now), 1),
                "revision": revision,
                "revision_min_scale": _int(kn.min_scale(kh.KN, "revisions", revision) if revision else None),
                "pa_desired": (pa.get("status") or {}).get("desiredScale"),
                "pa_actual": (pa.get("status") or {}).get("actualScale"),
                "replicas": replicas, "ready": ready_pods, "applied": st.get("appliedMinScale")}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
            except Exception as exc:  # a passing error costs one sample, not the timeline
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            self._stop.wait(self.interval)

    def __enter__(self) -> "Timeline":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def first(self, predicate) -> float | None:
        """Unix time of the first sample for which predicate(sample) holds."""
        return next((s["t"] for s in self.samples if predicate(s)), None)

    def save(self, path: Path, **figures) -> Path:
        import json

        replay = self.replay
        peak_index = 1440 + replay.peak_minute
        lo, hi = min(replay.now_index - 60, peak_index - 45), min(max(replay.now_index, peak_index) + 40,
                                                                  len(replay.counts) - 1)
        traffic = [{"t": replay.time_of(i), "count": float(replay.counts[i])} for i in range(lo, hi + 1)]
        path.write_text(json.dumps({
            "service": f"{self.kn.ns}/{self.kn.service}", "peak_at": replay.peak_at, "bed_start": replay.now,
            "traffic": traffic, "plans": self.plans, "samples": self.samples,
            "marks": [(self.clock(t) if self.clock else t, label) for t, label in self.marks],
            "replayed_clock": self.clock is not None,
            "sample_errors": self.errors, "figures": figures}, indent=1))
        return path


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def out_dir(tmp_path: Path) -> Path:
    """Where a scenario writes its timeline: $MESP_KNATIVE_OUT when set (kept after the run), else
    the test's own temporary directory."""
    import os

    out = Path(os.environ.get("MESP_KNATIVE_OUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def lead_minutes(timeline: Timeline, floor: int) -> float | None:
    """Minutes between the first sample with `floor` Ready pods and the replayed peak (> 0: before it)."""
    ready_at = timeline.first(lambda s: s["ready"] >= floor and s["revision_min_scale"] == floor)
    return None if ready_at is None else round((timeline.replay.peak_at - ready_at) / 60, 2)
