"""Active policies on a real API server with a real, backfilled Prometheus: the operator raises the
floor ahead of a real trace's peak and lowers it after, in Revision and in Template mode."""

from __future__ import annotations

import threading

import pytest

import kube_helpers as kh
from kube_helpers import SimClock, instances

pytestmark = pytest.mark.integration

CAPACITY = 100.0  # invocations per minute per instance in these policies
SPEED = 60.0      # simulated seconds per real second: two half-second loops per simulated minute


class Recorder:
    """Samples a value over (simulated) time in the background."""

    def __init__(self, clock, read, interval: float = 0.1):
        self.clock, self.read, self.interval = clock, read, interval
        self.samples: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((self.clock(), self.read()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def timeline(self, origin: float) -> str:
        """'minute:value' at each change, minutes relative to `origin` (for failure messages)."""
        out, last = [], object()
        for t, v in self.samples:
            if v != last:
                out.append(f"{(t - origin) / 60:+.0f}:{v}")
                last = v
        return " ".join(out)

    def values_between(self, start: float, end: float) -> list[int]:
        return [int(v) for t, v in self.samples if start <= t <= end and v is not None]


def test_active_revision_mode_raises_before_the_peak_and_lowers_after(
        admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-active")
    kh.create_knative_service(admin_client, ns, "peak-rev", annotations={kh.MIN_SCALE: "1"})
    day, peak_minute = history.rows["a"]
    peak_at = history.peak_time("a")
    peak_count = float(day[peak_minute - 5: peak_minute + 5].mean())
    kh.create_policy(admin_client, ns, "peak-rev", {
        "service": "peak-rev", "mode": "Active", "actuation": "Revision", "capacityPerInstance": CAPACITY,
        "leadMinutes": 2, "holdMinutes": 2, "horizonMinutes": 30, "maxScale": 80,
        "scaleDown": {"cooldownMinutes": 3}})

    clock = SimClock(start=peak_at - 60 * 60, speed=SPEED)
    metrics = run_operator(ns, clock=clock)
    with Recorder(clock, lambda: kh.revision_min_scale(admin_client, ns, "peak-rev-00001")) as rec:
        clock.sleep_until(peak_at + 50 * 60)

    quiet_before = rec.values_between(peak_at - 60 * 60, peak_at - 45 * 60)
    at_peak = rec.values_between(peak_at - 3 * 60, peak_at)
    after = rec.values_between(peak_at + 40 * 60, peak_at + 50 * 60)
    everything = [int(v) for _, v in rec.samples if v is not None]
    needed_at_peak = instances(peak_count, CAPACITY)
    st = kh.status(admin_client, ns, "peak-rev")
    assert quiet_before and at_peak and after, rec.samples[:5]
    # Before the peak the floor is already up: at least half of what the peak needs.
    demand = " ".join(f"{m - peak_minute:+d}:{instances(day[m], CAPACITY)}" for m in range(peak_minute - 40, peak_minute + 41, 5))
    assert min(at_peak) >= max(2, needed_at_peak // 2), (
        f"needed {needed_at_peak} at the peak; applied {rec.timeline(peak_at)}; demand {demand}; {st}")
    assert min(at_peak) > max(quiet_before)
    # After the peak it comes down again.
    assert max(after) < min(at_peak)
    # Never below the user's own min-scale (1), never above maxScale (80).
    assert 1 <= min(everything) and max(everything) <= 80

    assert st["actuation"] == "Revision"
    assert st["originalMinScale"] == "1" and st["userFloor"] == 1
    assert st["route"]["expert"] and isinstance(st["route"]["cluster"], int) and st["route"]["description"]
    assert len(st["plan"]) == 30 and all(1 <= v <= 80 for v in st["plan"])
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Ready": "True", "ModelLoaded": "True", "MetricsAvailable": "True", "Actuated": "True"}
    assert "MinScaleSet" in kh.event_reasons(admin_client, ns, "peak-rev")
    assert metrics.actuations.labels("revision")._value.get() >= 2

    # No trace on what MESP does not own: no finalizer, no kopf annotation, the template untouched.
    service = kh.get_service(admin_client, ns, "peak-rev")
    revision = kh.get_revision(admin_client, ns, "peak-rev-00001")
    for obj in (service, revision):
        assert not obj["metadata"].get("finalizers")
        assert set(obj["metadata"].get("annotations") or {}) <= {kh.MIN_SCALE, "serving.knative.dev/creator",
                                                                 "serving.knative.dev/lastModifier"}
    assert service["metadata"]["generation"] == 1
    assert service["spec"]["template"]["metadata"]["annotations"] == {kh.MIN_SCALE: "1"}


def test_template_mode_changes_are_damped(admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-template")
    kh.create_knative_service(admin_client, ns, "peak-tpl")
    peak_at = history.peak_time("a")
    cooldown = 15
    kh.create_policy(admin_client, ns, "peak-tpl", {
        "service": "peak-tpl", "mode": "Active", "actuation": "Template", "capacityPerInstance": CAPACITY,
        "leadMinutes": 2, "horizonMinutes": 30, "template": {"cooldownMinutes": cooldown, "hysteresis": 2},
        # Sized at quantile 0.9 (C/(1+C) with C = 9), as when this bound was set: the test is about damping.
        # At the default C = 10 (q0.909) the same day gives one more raise after a decrease near the peak.
        "coldStartCost": 9})
    start = peak_at - 45 * 60
    clock = SimClock(start=start, speed=SPEED)
    run_operator(ns, clock=clock)
    with Recorder(clock, lambda: kh.template_min_scale(admin_client, ns, "peak-tpl")) as rec:
        clock.sleep_until(peak_at + 45 * 60)
    simulated_minutes = (clock() - start) / 60

    service = kh.get_service(admin_client, ns, "peak-tpl")
    template_changes = service["metadata"]["generation"] - 1  # each would be a new Revision in Knative
    assert template_changes >= 1, "Template mode never wrote the template"
    # A raise covers the whole cooldown ahead, decreases wait for it: a handful of rollouts, not one a minute.
    assert template_changes <= 2 + simulated_minutes / cooldown, (template_changes, simulated_minutes, rec.timeline(start))
    assert max(rec.values_between(peak_at - 5 * 60, peak_at)) >= 2
    st = kh.status(admin_client, ns, "peak-tpl")
    assert st["actuation"] == "Template" and st.get("originalMinScale") is None
    # Revision mode was not used: the Revision itself carries no min-scale.
    assert kh.revision_min_scale(admin_client, ns, "peak-tpl-00001") is None
