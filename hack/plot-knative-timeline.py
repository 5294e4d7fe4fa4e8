#!/usr/bin/env python3
"""Draw a Knative suite timeline (tests/knative: timeline-revision.json, timeline-template.json) as a PNG.

Top: the replayed real traffic (invocations per minute, from the Azure sample) around its peak, and
the plans MESP wrote into its status (instances per minute), against minutes from the replayed peak.
Bottom: what happened on the cluster while the scenario ran, against seconds since the policy was
created: MESP's applied floor, min-scale on the latest ready Revision, the PodAutoscaler's desired
scale and the Deployment's Ready pods (sampled twice a second), with the scenario's steps marked.

Usage: hack/plot-knative-timeline.py TIMELINE.json OUT.png
(run the suite with MESP_KNATIVE_OUT=DIR to keep the JSON files; docs/knative-loop.md)
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path


def _unix(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def plot(timeline: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak, start = timeline["peak_at"], timeline["bed_start"]
    samples = timeline["samples"]
    marks = timeline["marks"]
    t0 = next((t for t, label in marks if label == "policy created"), samples[0]["t"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [1.1, 1]})

    # -- top: traffic and plans, minutes from the replayed peak
    minutes = [(p["t"] - peak) / 60 for p in timeline["traffic"]]
    counts = [p["count"] for p in timeline["traffic"]]
    history = [m <= (start - peak) / 60 for m in minutes]
    top.step([m for m, h in zip(minutes, history) if h], [c for c, h in zip(counts, history) if h], where="post",
             color="tab:gray", label="traffic in Prometheus (history, real day)")
    top.step([m for m, h in zip(minutes, history) if not h], [c for c, h in zip(counts, history) if not h],
             where="post", color="tab:gray", linestyle=":", label="the rest of the real day (not replayed)")
    top.set_ylabel("invocations / minute")
    top.set_xlabel("minutes from the replayed peak")
    top.axvline(0, color="tab:red", linewidth=1)
    top.axvline((start - peak) / 60, color="k", linewidth=0.8, linestyle="--")
    top.text(0, top.get_ylim()[1] * 0.95, " replayed peak", color="tab:red", va="top")
    top.text((start - peak) / 60, top.get_ylim()[1] * 0.95, "bed start ", ha="right", va="top")
    plan_axis = top.twinx()
    plans = sorted(timeline["plans"].items())
    if len(plans) > 6:  # a replayed clock plans every replayed minute: a few of them, and the last
        plans = plans[:-1:len(plans) // 5] + plans[-1:]
    for i, (plan_start, plan) in enumerate(plans):
        first = (_unix(plan_start) - peak) / 60
        xs = [first + k for k in range(len(plan) + 1)]
        last = i == len(plans) - 1
        plan_axis.step(xs, plan + plan[-1:], where="post", color="tab:blue", alpha=1.0 if last else 0.25,
                       label="MESP's plan (min-scale per minute)" if last else None)
    plan_axis.set_ylabel("instances")
    plan_axis.set_ylim(bottom=0)
    handles = top.get_legend_handles_labels()[0] + plan_axis.get_legend_handles_labels()[0]
    labels = top.get_legend_handles_labels()[1] + plan_axis.get_legend_handles_labels()[1]
    top.legend(handles, labels, loc="upper left", fontsize=8)
    top.set_title(f"{timeline['service']}: replayed traffic and MESP's plan")

    # -- bottom: the cluster, seconds since the policy was created (on a replayed clock: the operator's
    # minutes from the peak, the top panel's axis)
    replayed = timeline.get("replayed_clock")
    if replayed:
        xs = [(s["sim"] - peak) / 60 for s in samples]
        t0 = peak
    else:
        xs = [s["t"] - t0 for s in samples]
    scale = 60.0 if replayed else 1.0
    # The four often move within a second of each other: thick to thin, so each stays visible.
    for key, label, color, width in (("ready", "Deployment Ready pods", "0.75", 7),
                                     ("pa_desired", "PodAutoscaler desired scale", "tab:green", 4.5),
                                     ("revision_min_scale", "min-scale on the Revision", "tab:orange", 2.5),
                                     ("applied", "MESP applied (status)", "tab:blue", 1)):
        ys = [s.get(key) for s in samples]
        bottom.step(xs, [float("nan") if y is None else y for y in ys], where="post", label=label, color=color,
                    linewidth=width)
    for t, label in marks:
        bottom.axvline((t - t0) / scale, color="tab:gray", linewidth=0.7, linestyle=":")
        bottom.text((t - t0) / scale, bottom.get_ylim()[1], f" {label}", rotation=90, va="top", fontsize=7,
                    color="tab:gray")
    if replayed:
        bottom.axvline(0, color="tab:red", linewidth=1)
        bottom.set_xlim(top.get_xlim())
        bottom.set_xlabel(f"minutes from the replayed peak (the operator's clock, {figures_speed(timeline)}x "
                          "the wall clock; Knative in real time)")
    else:
        bottom.set_xlabel("seconds since the MespPolicy was created (real time)")
    bottom.set_ylabel("instances")
    bottom.legend(loc="center left", fontsize=8)
    bottom.set_ylim(bottom=0)
    figures = timeline.get("figures") or {}
    if "needed" in figures:
        bottom.axhline(figures["needed"], color="tab:red", linewidth=0.8, linestyle="--")
        bottom.set_title(f"on the cluster: the {figures['needed']} pods the peak needs Ready {figures.get('lead_min')} "
                         f"min before it, {figures.get('revisions_created')} Revisions created")
    else:
        bottom.set_title(f"on the cluster: floor {figures.get('floor')}, Ready pods {figures.get('lead_min')} min "
                         f"before the replayed peak, {figures.get('revisions_created')} Revisions created")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def figures_speed(timeline: dict) -> str:
    return f"{(timeline.get('figures') or {}).get('speed', '?'):g}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    plot(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
