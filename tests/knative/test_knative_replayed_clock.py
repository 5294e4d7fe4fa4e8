"""Time compressed: `mesp operator` on a replayed clock, 45 times faster than the wall clock, walks
through a real day's peak that Prometheus holds in the past, while Knative's controllers keep their
own timing. MESP's floor for the peak is on the Revision before the peak, Knative makes its pods
Ready within seconds (wall seconds: Knative runs in real time), and lowers them after the peak."""

from __future__ import annotations

import math
import time

import pytest

from knative_helpers import REPLAYED_PAST, TIMINGS, Kn, Timeline, out_dir, policy, wait_applied
import kube_helpers as kh  # tests/integration's, put on sys.path by knative_helpers

pytestmark = pytest.mark.knative

SPEED = 30.0               # one replayed minute every 2 s: the 90-minute walk takes 3 min
# Replayed minutes walked through before and after the peak. The floor stage keeps a policy's floor
# choice until its next 30-minute boundary (as the replay does); a keep-alive choice holds the peak's
# floor up to 30 minutes after it, so the walk goes on past both.
BEFORE, AFTER = 40, 50
USER_FLOOR = 1


def test_on_a_replayed_clock_the_floor_is_ready_before_the_peak_and_lowered_after_it(
        kube, knative_bed, mesp_operator, tmp_path):
    replay = knative_bed.past_replay
    ns, name = REPLAYED_PAST
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: str(USER_FLOOR)})
    revision = kn.latest()
    start, anchor = replay.peak_at - BEFORE * 60, time.time() + 1
    sim = lambda wall: start + (wall - anchor) * SPEED  # noqa: E731  the operator's clock, exactly
    kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Revision"))
    with Timeline(kn, name, replay, clock=sim) as timeline:
        timeline.mark("policy created")
        log = mesp_operator(ns, "--loop-interval-seconds", "1", "--clock-start", str(start),
                            "--clock-speed", str(SPEED), "--clock-anchor", str(anchor))
        wait_applied(kube, ns, name, log, above=USER_FLOOR, timeout=120)
        # Walk on until AFTER replayed minutes past the peak.
        while sim(time.time()) < replay.peak_at + AFTER * 60:
            time.sleep(1)
    # The instances the peak's busiest minutes need at the policy's capacity per instance.
    capacity = kh.status(kube, ns, name)["capacityPerInstance"]
    needed = math.ceil(max(replay.day[replay.peak_minute - 2: replay.peak_minute + 3]) / capacity)
    # MESP's part in replayed time (when its floor for the peak was on the Revision), Knative's in
    # wall time (it reacts in real seconds, which the replayed clock would stretch 30-fold).
    raised_at = timeline.first(lambda s: (s["revision_min_scale"] or 0) >= needed)
    ready_at = timeline.first(lambda s: s["ready"] >= needed)
    decision_lead = None if raised_at is None else round((replay.peak_at - sim(raised_at)) / 60, 2)
    knative_s = None if ready_at is None or raised_at is None else round(ready_at - raised_at, 2)
    lead = None if knative_s is None else round(decision_lead - knative_s / 60, 2)
    first_raise = timeline.first(lambda s: (s["revision_min_scale"] or 0) > USER_FLOOR)
    top = max(s["ready"] for s in timeline.samples)
    after = [s for s in timeline.samples if sim(s["t"]) > replay.peak_at + 5 * 60]
    lowest_after = min(s["ready"] for s in after)
    TIMINGS["replayed_clock_floor_for_peak_lead_min"] = decision_lead
    TIMINGS["replayed_clock_floor_to_ready_pods_s"] = knative_s
    TIMINGS["replayed_clock_needed_pods_ready_lead_min"] = lead
    TIMINGS["replayed_clock_first_raise_before_peak_min"] = round((replay.peak_at - sim(first_raise)) / 60, 1)
    TIMINGS["replayed_clock_pods_top_then_lowest_after_peak"] = f"{top} -> {lowest_after}"
    path = timeline.save(out_dir(tmp_path) / "timeline-replayed-clock.json", floor=top, lead_min=lead,
                         needed=needed, revisions_created=len(kn.revisions()) - 1, speed=SPEED)
    print(f"\nReplayed clock ({SPEED:g}x): MESP's floor of {needed} for the peak on the Revision {decision_lead} "
          f"replayed min before it, Knative's pods Ready {knative_s} s later, so {lead} min before it in real time "
          f"(first raise {TIMINGS['replayed_clock_first_raise_before_peak_min']} min before), top {top}, "
          f"down to {lowest_after} after it; timeline {path}")
    assert decision_lead is not None and decision_lead > 0, f"MESP's floor for the peak came only after it (log: {log})"
    assert knative_s is not None and knative_s < 30, f"Knative's pods followed MESP's floor only after {knative_s} s"
    assert lead > 0, "the pods the peak needs were Ready only after it"
    assert lowest_after < top, f"Knative kept {top} pods after the peak (log: {log})"
    # Knative followed MESP's floor down on the same Revision (no rollout) and never below the user's.
    assert kn.revisions() == [revision]
    assert min(s["ready"] for s in timeline.samples) >= USER_FLOOR
