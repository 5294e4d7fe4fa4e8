"""What a replay found: per-policy figures, curve read-offs, the text table and the trade-off plot."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class PolicyResult:
    name: str
    cold_starts: int
    cold_start_rate: float        # cold starts / demanded instance-minutes
    cold_minutes: int             # minutes with at least one cold start
    cold_minute_rate: float       # cold_minutes / minutes with demand
    idle_instance_minutes: int
    warm_instance_minutes: int    # instance-minutes held (alive or starting for the floor)
    cold_vs_default: float        # cold starts relative to the Knative default (1.0 = same)
    idle_vs_default: float
    # 75th percentile over functions with demand of cold starts / demanded instance-minutes (Shahrad
    # et al. report the 75th percentile of per-function cold starts per invocation; same idea, this unit)
    p75_function_cold_rate: float
    changes_per_hour: float       # min-scale changes per function-hour (each is an API write, or a revision)
    coverage: float | None = None       # share of minutes with invocations <= the forecast sized from
    coverage_busy: float | None = None  # the same over minutes with invocations only
    group: str | None = None
    quantile: float | None = None
    cold_start_cost: float | None = None  # the cost setting of a cost sweep's point


def is_curve_point(r: PolicyResult) -> bool:
    """A point of a sweep: a policy in a group, set by a quantile or a cold-start cost."""
    return bool(r.group) and (r.quantile is not None or r.cold_start_cost is not None)


@dataclass
class SimulationReport:
    results: list[PolicyResult]
    settings: dict
    totals: dict                  # demand instance-minutes, busy minutes, invocations, functions
    per_function_cold: np.ndarray = field(repr=False)   # int [n_policies, n_functions]
    per_function_idle: np.ndarray = field(repr=False)
    recorded_settings: dict | None = field(default=None, repr=False)  # name -> int [n, span] (record_settings=True)

    def result(self, name: str) -> PolicyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no policy named {name!r}; have {[r.name for r in self.results]}")

    def curve_comparisons(self) -> list[dict]:
        """Each curve read off at every other policy's idle cost and cold-start rate."""
        return compare_curves(self.results)

    def curve_readoffs(self) -> list[dict]:
        """Each curve at the seasonal-naive floor's idle and at keep-alive 10 min's cold-start rate."""
        return curve_readoffs(self.results)

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "totals": self.totals,
            "cold_start_rate_definition": "cold starts / demanded instance-minutes",
            # JSON has no infinity: "vs default" of a policy when the default had none is null.
            "policies": [{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in vars(r).items()}
                         for r in self.results],
            "curve_comparisons": self.curve_comparisons(),
            "curve_readoffs": self.curve_readoffs(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=_json_default)


def _curves(results: Sequence[PolicyResult]) -> dict[str, list[PolicyResult]]:
    """Groups of at least two sweep points, each sorted along its sweep (cost, else quantile)."""
    curves: dict[str, list[PolicyResult]] = {}
    for r in results:
        if is_curve_point(r):
            curves.setdefault(r.group, []).append(r)
    return {g: sorted(points, key=lambda r: (r.cold_start_cost if r.cold_start_cost is not None else -1.0,
                                              r.quantile if r.quantile is not None else -1.0))
            for g, points in curves.items() if len(points) >= 2}


def _read_off(points: Sequence[PolicyResult], idle_at: float | None = None, cold_at: float | None = None):
    """The curve's cold-start rate at `idle_at` idle instance-minutes, or its idle at `cold_at` cold-start
    rate, linear between its points; None outside the range the curve covers (no extrapolation)."""
    by_idle = sorted(points, key=lambda r: r.idle_instance_minutes)
    idle = np.array([r.idle_instance_minutes for r in by_idle], dtype=float)
    cold = np.array([r.cold_start_rate for r in by_idle], dtype=float)
    if idle_at is not None:
        return float(np.interp(idle_at, idle, cold)) if idle[0] <= idle_at <= idle[-1] else None
    order = np.argsort(cold, kind="stable")
    if cold[order[0]] <= cold_at <= cold[order[-1]]:
        return float(np.interp(cold_at, cold[order], idle[order]))
    return None


def compare_curves(results: Sequence[PolicyResult]) -> list[dict]:
    """A curve (a group's sweep points over a cold-start cost or a quantile) against each other
    policy: the curve's cold-start rate at the same idle instance-minutes, and its idle at the same
    cold-start rate, by linear interpolation between the curve's points (None outside the range the
    curve covers; no extrapolation). A lower figure than the policy's own means the curve does
    better on that axis."""
    out = []
    for group, points in _curves(results).items():
        for other in results:
            if other.group == group or other.name == "oracle":
                continue
            out.append({"curve": group, "policy": other.name, "policy_is_curve_point": is_curve_point(other),
                        "policy_cold_start_rate": other.cold_start_rate,
                        "policy_idle_instance_minutes": other.idle_instance_minutes,
                        "curve_cold_start_rate_at_same_idle": _read_off(points, idle_at=other.idle_instance_minutes),
                        "curve_idle_at_same_cold_start_rate": _read_off(points, cold_at=other.cold_start_rate)})
    return out


# The read-offs issue 16 judges curves by: cold-start rate at the seasonal-naive floor's idle, and
# idle at keep-alive 10 min's cold-start rate.
SEASONAL_NAIVE_FLOOR_POLICY = "seasonal naive"
KEEP_ALIVE_10_POLICY = "keep-alive 10 min"


def curve_readoffs(results: Sequence[PolicyResult], at_idle_of: str = SEASONAL_NAIVE_FLOOR_POLICY,
                   at_cold_rate_of: str = KEEP_ALIVE_10_POLICY) -> list[dict]:
    """Per curve: its cold-start rate at policy `at_idle_of`'s idle instance-minutes and its idle at
    policy `at_cold_rate_of`'s cold-start rate, each with the ratio to that policy's own figure
    (None where the curve does not reach that point or the policy is not in the replay)."""
    by_name = {r.name: r for r in results}
    idle_ref, cold_ref = by_name.get(at_idle_of), by_name.get(at_cold_rate_of)
    out = []
    for group, points in _curves(results).items():
        entry = {"curve": group, "points": len(points),
                 "costs": [r.cold_start_cost for r in points if r.cold_start_cost is not None],
                 "at_idle_of": at_idle_of, "at_cold_rate_of": at_cold_rate_of,
                 "reference_idle": None, "reference_cold_start_rate_at_that_idle": None,
                 "cold_start_rate_at_reference_idle": None, "cold_start_rate_ratio": None,
                 "reference_cold_start_rate": None, "reference_idle_at_that_cold_start_rate": None,
                 "idle_at_reference_cold_start_rate": None, "idle_ratio": None}
        if idle_ref is not None:
            at = _read_off(points, idle_at=idle_ref.idle_instance_minutes)
            entry.update(reference_idle=idle_ref.idle_instance_minutes,
                         reference_cold_start_rate_at_that_idle=idle_ref.cold_start_rate,
                         cold_start_rate_at_reference_idle=at,
                         cold_start_rate_ratio=_safe_ratio(at, idle_ref.cold_start_rate))
        if cold_ref is not None:
            at = _read_off(points, cold_at=cold_ref.cold_start_rate)
            entry.update(reference_cold_start_rate=cold_ref.cold_start_rate,
                         reference_idle_at_that_cold_start_rate=cold_ref.idle_instance_minutes,
                         idle_at_reference_cold_start_rate=at,
                         idle_ratio=_safe_ratio(at, cold_ref.idle_instance_minutes))
        out.append(entry)
    return out


def _safe_ratio(value, reference):
    return None if value is None or not reference else float(value) / float(reference)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def format_table(report: SimulationReport) -> str:
    """The comparison as a fixed-width text table."""
    header = ("policy", "cold starts", "cold rate", "vs default", "idle inst-min", "vs default",
              "p75 fn cold", "changes/h", "fc coverage (busy)")
    rows = []
    for r in report.results:
        rows.append((r.name, f"{r.cold_starts:,}", f"{100 * r.cold_start_rate:.2f}%",
                     _times(r.cold_vs_default), f"{r.idle_instance_minutes:,}", _times(r.idle_vs_default),
                     f"{100 * r.p75_function_cold_rate:.1f}%", f"{r.changes_per_hour:.2f}",
                     _coverage_text(r)))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    readoffs = [r for r in report.curve_readoffs()
                if r["reference_idle"] is not None or r["reference_cold_start_rate"] is not None]
    if readoffs:
        lines.append("")
        lines.append("curve read-offs (linear between a curve's points; '-' where the curve does not reach):")
        for r in readoffs:
            lines.append(f"  {r['curve']}: {_readoff_text(r)}")
    # Single policies only: another curve's points are in the JSON.
    comparisons = [c for c in report.curve_comparisons() if not c["policy_is_curve_point"]
                   and (c["curve_cold_start_rate_at_same_idle"] is not None or c["curve_idle_at_same_cold_start_rate"] is not None)]
    if comparisons:
        lines.append("")
        lines.append("each curve read off at each policy's idle cost and cold-start rate (linear between its points):")
        for c in comparisons:
            parts = []
            at_idle = c["curve_cold_start_rate_at_same_idle"]
            if at_idle is not None:
                parts.append(f"cold rate {100 * at_idle:.2f}% vs {100 * c['policy_cold_start_rate']:.2f}% at the same idle")
            at_cold = c["curve_idle_at_same_cold_start_rate"]
            if at_cold is not None:
                parts.append(f"idle {at_cold:,.0f} vs {c['policy_idle_instance_minutes']:,} at the same cold rate")
            lines.append(f"  {c['curve']} vs {c['policy']}: " + "; ".join(parts))
    t = report.totals
    lines.append("")
    lines.append(f"{t['functions']} functions x {t['minutes']} minutes, {t['invocations']:,.0f} invocations, "
                 f"{t['demand_instance_minutes']:,} demanded instance-minutes; "
                 f"cold rate = cold starts / demanded instance-minutes; 'vs default' relative to "
                 f"'{t['reference_policy']}'; changes/h = min-scale changes per function-hour; fc coverage = "
                 f"share of minutes (with invocations) at or below the forecast sized from, {report.settings['lead_minutes']} "
                 f"min ahead.")
    return "\n".join(lines)


def _readoff_text(r: dict) -> str:
    parts = []
    if r["reference_idle"] is not None:
        at = r["cold_start_rate_at_reference_idle"]
        parts.append(f"cold rate {_pct(at)} at {r['at_idle_of']}'s idle {r['reference_idle']:,} "
                     f"(it has {_pct(r['reference_cold_start_rate_at_that_idle'])}; {_ratio_text(r['cold_start_rate_ratio'])})")
    if r["reference_cold_start_rate"] is not None:
        at = r["idle_at_reference_cold_start_rate"]
        parts.append(f"idle {'-' if at is None else f'{at:,.0f}'} at {r['at_cold_rate_of']}'s cold rate "
                     f"{_pct(r['reference_cold_start_rate'])} (it has {r['reference_idle_at_that_cold_start_rate']:,}; "
                     f"{_ratio_text(r['idle_ratio'])})")
    return "; ".join(parts)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _ratio_text(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _coverage_text(r: PolicyResult) -> str:
    if r.coverage is None:
        return "-"
    busy = "-" if r.coverage_busy is None else f"{100 * r.coverage_busy:.1f}%"
    return f"{100 * r.coverage:.1f}% ({busy})"


def _times(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}x"


def plot_tradeoff(report: SimulationReport, path) -> None:
    """PNG: cold-start rate vs idle instance-minutes, one point per policy, sweeps as curves."""
    # matplotlib is heavy and optional at run time: import it only here, without pyplot's global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    groups = _curves(report.results)
    singles = [r for r in report.results if r.group not in groups or not is_curve_point(r)]
    colors = [f"C{i % 10}" for i in range(len(singles) + len(groups))]
    markers = "osD^v<>phX*"
    for i, r in enumerate(singles):
        ax.scatter(r.idle_instance_minutes, 100 * r.cold_start_rate, marker=markers[i % len(markers)],
                   s=60, color=colors[i], label=r.name, zorder=3, clip_on=False)
    for j, (g, members) in enumerate(groups.items()):
        xs = [r.idle_instance_minutes for r in members]
        ys = [100 * r.cold_start_rate for r in members]
        by_cost = all(r.cold_start_cost is not None for r in members)
        ax.plot(xs, ys, "-o", lw=1.5, ms=4, color=colors[len(singles) + j],
                label=f"{g}, {'cold-start cost C (idle inst-min per cold start)' if by_cost else 'quantile'} sweep", zorder=4, clip_on=False)
        for k, (r, x, y) in enumerate(zip(members, xs, ys)):
            ax.annotate(_point_label(r), (x, y), textcoords="offset points",
                        xytext=(6, 6 if k % 2 == 0 else -12), fontsize=7)
    ax.set_xlabel("idle instance-minutes (lower is cheaper)")
    ax.set_ylabel("cold-start rate, % of demanded instance-minutes")
    t = report.totals
    ax.set_title(f"Cold starts vs idle cost: {t['functions']} functions x {t['minutes']} min replayed")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


def _point_label(r: PolicyResult) -> str:
    return f"C={r.cold_start_cost:g}" if r.cold_start_cost is not None else f"q={r.quantile:g}"
