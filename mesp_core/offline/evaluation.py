"""Experiment 3: rolling-origin backtest of the mixture against the dense models and the floors.

Protocol (defaults of `mesp evaluate`): on functions held out from training, forecast origins every
60 minutes from minute 720 to 1380 of the last day, horizon 60, context = every minute before the
origin. Every approach sees exactly the same (function, origin) pairs. Metrics are pooled over all
of them (see mesp_core.offline.metrics); per-cluster rows group the pairs by the cluster the router chose.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from mesp_core.constants import DEFAULT_HORIZON, MINUTES_PER_DAY
from mesp_core.offline.coverage import MEASURE_GRID, REPORT_LEVELS, CoverageSamples
from mesp_core.offline.metrics import METRIC_NAMES, all_metrics

# The protocol's origins: minutes of the last day (the defaults of `mesp evaluate`).
FIRST_ORIGIN, LAST_ORIGIN, ORIGIN_EVERY = 720, 1380, 60
DEFAULT_ORIGINS = tuple(range(FIRST_ORIGIN, LAST_ORIGIN + 1, ORIGIN_EVERY))
SAMPLE_CONTEXT = 240  # minutes of context the sample plot shows before its origin


@dataclass
class BacktestResult:
    approaches: list[str]
    overall: dict[str, dict[str, float]]  # approach -> metric -> value
    per_cluster: dict[str, dict[str, dict[str, float]]]  # cluster label -> approach -> metrics
    n_functions: int
    n_forecasts: int
    origins: list[int]
    horizon: int
    cluster_sizes: dict[str, int] = field(default_factory=dict)
    samples: dict = field(default_factory=dict)  # for plots: a few (context, actual, forecasts)
    # The experts' (moe) quantile coverage: "overall" and "per_cluster" summaries at the report
    # levels, "reliability" curves per cluster for the plot (see mesp_core.offline.coverage).
    coverage: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "protocol": {
                "origins": self.origins,
                "horizon": self.horizon,
                "n_functions": self.n_functions,
                "n_forecasts": self.n_forecasts,
                "context": "every minute before the origin",
            },
            "overall": self.overall,
            "per_cluster": self.per_cluster,
            "cluster_sizes": self.cluster_sizes,
            **({"quantile_coverage": self.coverage} if self.coverage else {}),
        }


def approach_names(model) -> list[str]:
    dense = [f"dense:{family}" for family in model.dense_experts]
    return ["moe", *dense, "seasonal_naive", "repeat_last_hour"]


def backtest(
    model,
    counts: np.ndarray,
    origins=DEFAULT_ORIGINS,
    horizon: int = DEFAULT_HORIZON,
    approaches: list[str] | None = None,
    day_offset: int | None = None,
    n_samples: int = 6,
    progress: bool = False,
    coverage: bool = True,
) -> BacktestResult:
    """Backtest on `counts` [n, T]; origins are minutes of the last day (offset by day_offset).
    `coverage`: also measure the coverage of the mixture's quantiles (when "moe" is an approach)."""
    counts = np.asarray(counts, dtype=np.float32)
    if counts.ndim != 2 or len(counts) == 0:
        raise ValueError("backtest needs a non-empty [n_functions, minutes] array")
    origins, absolute = origin_minutes(counts.shape[1], origins, horizon, day_offset)
    approaches = approaches or approach_names(model)
    forecasts = backtest_forecasts(model, counts, absolute, horizon, approaches, progress, coverage)
    return summarise_backtest(model, forecasts, origins, horizon, approaches, n_samples)


def origin_minutes(minutes: int, origins, horizon: int, day_offset: int | None = None) -> tuple[list[int], list[int]]:
    """(origins as given, the same as minutes of a trace of `minutes`): origins count from the last day."""
    if day_offset is None:
        day_offset = (minutes // MINUTES_PER_DAY - 1) * MINUTES_PER_DAY
    origins = [int(o) for o in origins]
    absolute = [day_offset + o for o in origins]
    for o in absolute:
        if o < 60 or o + horizon > minutes:
            raise ValueError(f"origin {o - day_offset} leaves no room for 60 minutes of context and a {horizon}-minute horizon")
    return origins, absolute


@dataclass
class BacktestForecasts:
    """What a backtest's figures are computed from, for a set of functions, per origin: the actuals
    [n, h], each approach's forecasts, the routes and the MASE scales [n]; and for the sample plot
    each function's invocations before the middle origin and its last minutes there.

    Each row depends on its function alone, so the forecasts of parts of the functions (shards),
    joined in order (`join_forecasts`), are those of all of them: the figures come out the same."""

    actual: list[np.ndarray]
    forecasts: dict[str, list[np.ndarray]]
    routes: list[np.ndarray]
    scales: list[np.ndarray]
    volume: np.ndarray
    sample_context: np.ndarray
    sample_origin: int  # the middle origin, a minute of the trace
    coverage: list[CoverageSamples] = field(default_factory=list)  # per origin, when measured

    @property
    def n_functions(self) -> int:
        return len(self.volume)


def backtest_forecasts(model, counts: np.ndarray, absolute: list[int], horizon: int, approaches: list[str],
                       progress: bool = False, coverage: bool = True) -> BacktestForecasts:
    """Every approach's forecasts of `counts` [n, T] at the minutes `absolute` (see origin_minutes), and
    with `coverage` where each actual fell in the mixture's forecast distribution."""
    from tqdm.auto import tqdm

    from mesp_core.forecasting.experts import build_expert

    counts = np.asarray(counts, dtype=np.float32)
    repeat = build_expert({"family": "repeat_last_hour", "horizon": horizon})
    actual, forecasts, routes, scales = [], {a: [] for a in approaches}, [], []
    coverage_parts = []
    for origin in tqdm(absolute, desc="backtest origins", disable=not progress, file=sys.stderr, leave=False):
        context = counts[:, :origin]
        actual.append(counts[:, origin : origin + horizon])
        routes.append(model.route(context))
        scales.append(_mase_scale(context))
        for name in approaches:
            if name == "moe" and coverage:
                distribution = model.forecast_distribution(context, horizon, approach="moe")
                forecasts[name].append(distribution.point)
                coverage_parts.append(CoverageSamples.measure(distribution, actual[-1]))
            else:
                forecasts[name].append(_forecast(model, repeat, context, horizon, name))
    middle = absolute[len(absolute) // 2]
    volume = counts[:, :middle].sum(axis=1)
    sample_context = counts[:, middle - min(middle, SAMPLE_CONTEXT) : middle]
    return BacktestForecasts(actual, forecasts, routes, scales, volume, sample_context, middle, coverage_parts)


def join_forecasts(parts: list[BacktestForecasts]) -> BacktestForecasts:
    """The forecasts of shards of functions as one set, the functions in shard order."""
    if not parts:
        raise ValueError("no backtest parts to join")
    origins = range(len(parts[0].actual))

    def joined(lists):
        return [np.concatenate([part[o] for part in lists]) for o in origins]

    return BacktestForecasts(
        actual=joined([p.actual for p in parts]),
        forecasts={name: joined([p.forecasts[name] for p in parts]) for name in parts[0].forecasts},
        routes=joined([p.routes for p in parts]),
        scales=joined([p.scales for p in parts]),
        volume=np.concatenate([p.volume for p in parts]),
        sample_context=np.concatenate([p.sample_context for p in parts]),
        sample_origin=parts[0].sample_origin,
        coverage=[CoverageSamples.concatenate([p.coverage[o] for p in parts]) for o in range(len(parts[0].coverage))],
    )


def summarise_backtest(model, found: BacktestForecasts, origins: list[int], horizon: int, approaches: list[str],
                       n_samples: int = 6) -> BacktestResult:
    """The figures of a backtest, pooled over every (function, origin) pair, overall and per cluster."""
    y = np.concatenate(found.actual)
    route = np.concatenate(found.routes)
    scale = np.concatenate(found.scales)
    preds = {name: np.concatenate(parts) for name, parts in found.forecasts.items()}

    overall = {name: _metrics(y, preds[name], scale) for name in approaches}
    per_cluster, sizes = {}, {}
    for cluster in np.unique(route):
        mask = route == cluster
        label = f"{int(cluster)}: {model.describe_cluster(int(cluster))}"
        sizes[label] = int(mask.sum())
        per_cluster[label] = {name: _metrics(y[mask], preds[name][mask], scale[mask]) for name in approaches}
    quantile_coverage = _coverage_by_cluster(model, found.coverage, route) if found.coverage else {}
    return BacktestResult(
        approaches=list(approaches),
        overall=overall,
        per_cluster=per_cluster,
        n_functions=found.n_functions,
        n_forecasts=int(y.shape[0]),
        origins=origins,
        horizon=horizon,
        cluster_sizes=sizes,
        samples=_pick_samples(found, origins, n_samples),
        coverage=quantile_coverage,
    )


RELIABILITY_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def _coverage_by_cluster(model, parts, route: np.ndarray) -> dict:
    """Coverage of the mixture's quantiles, overall and per routed cluster (labels as per_cluster)."""
    samples = CoverageSamples.concatenate(parts)
    grid_index = [int(np.argmin(np.abs(MEASURE_GRID - q))) for q in RELIABILITY_LEVELS]
    groups = {"all": samples}
    for cluster in np.unique(route):
        groups[f"{int(cluster)}: {model.describe_cluster(int(cluster))}"] = samples.subset(route == cluster)
    reliability = {}
    for label, group in groups.items():
        pit, share = group.pit_curve(), group.at_or_below_curve()
        reliability[label] = {"levels": list(RELIABILITY_LEVELS), "pit": [float(pit[i]) for i in grid_index],
                              "at_or_below": [float(share[i]) for i in grid_index]}
    return {"calibrated": getattr(model, "quantile_calibration", None) is not None,
            "overall": samples.summary(),
            "per_cluster": {label: group.summary() for label, group in groups.items() if label != "all"},
            "reliability": reliability}


def _forecast(model, repeat, context, horizon: int, name: str) -> np.ndarray:
    if name == "moe":
        return model.forecast(context, horizon, approach="moe")
    if name == "seasonal_naive":
        return model.forecast(context, horizon, approach="naive")
    if name == "repeat_last_hour":
        from mesp_core.data.windows import prepare_contexts

        return np.clip(repeat.predict(prepare_contexts(context, repeat.input_size)), 0, None)[:, :horizon]
    if name.startswith("dense:"):
        return model.forecast(context, horizon, approach=name)
    raise ValueError(f"unknown approach {name!r}")


def _mase_scale(context: np.ndarray) -> np.ndarray:
    """Per-function MASE denominator: mean absolute one-step change over the context."""
    diffs = np.abs(np.diff(context, axis=1)).mean(axis=1)
    return np.where(diffs > 0, diffs, 1.0).astype(np.float64)


def _metrics(y: np.ndarray, yhat: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    values = all_metrics(y, yhat)
    # MASE: absolute errors scaled per function, then averaged (Hyndman & Koehler 2006).
    values["mase"] = float(np.mean(np.abs(y - yhat) / scale[:, None]))
    return {name: float(values[name]) for name in METRIC_NAMES}


def _pick_samples(found: BacktestForecasts, origins: list[int], n_samples: int) -> dict:
    """A few held-out functions at the middle origin, the busiest per cluster first, for the plot."""
    if n_samples <= 0:
        return {}
    mid = len(origins) // 2
    clusters_here = found.routes[mid]
    chosen: list[int] = []
    for cluster in np.unique(clusters_here):
        members = np.flatnonzero(clusters_here == cluster)
        chosen.append(int(members[np.argmax(found.volume[members])]))
    chosen = chosen[:n_samples]
    return {
        "origin": int(found.sample_origin),
        "items": [
            {
                "function": i,
                "cluster": int(clusters_here[i]),
                "context": found.sample_context[i].tolist(),
                "actual": found.actual[mid][i].tolist(),
                "forecasts": {name: p[mid][i].tolist() for name, p in found.forecasts.items()},
            }
            for i in chosen
        ],
    }


def format_table(result: BacktestResult) -> str:
    """The one table `mesp evaluate` prints: overall rows, then per-cluster rows."""
    header = f"{'approach':<26}" + "".join(f"{m:>14}" for m in METRIC_NAMES)
    lines = [
        f"rolling-origin backtest: {result.n_functions} held-out functions x {len(result.origins)} origins "
        f"({result.origins[0]}..{result.origins[-1]}), horizon {result.horizon} -> {result.n_forecasts} forecasts",
        "MAPE on non-zero minutes; WAPE = sum|err| / sum(actual); MASE vs one-step naive of the context.",
        "",
        header,
        "-" * len(header),
    ]
    best_wape = min(result.overall[a]["wape"] for a in result.approaches)
    for name in result.approaches:
        lines.append(_row(name, result.overall[name], mark=result.overall[name]["wape"] == best_wape))
    for label, table in result.per_cluster.items():
        lines += ["", f"cluster {label} ({result.cluster_sizes.get(label, 0)} forecasts)"]
        for name in result.approaches:
            lines.append(_row("  " + name, table[name]))
    if result.coverage:
        lines += ["", *format_coverage(result.coverage)]
    return "\n".join(lines)


def _row(name: str, metrics: dict, mark: bool = False) -> str:
    cells = "".join(f"{_fmt(metrics[m]):>14}" for m in METRIC_NAMES)
    return f"{name + (' *' if mark else ''):<26}{cells}"


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def format_coverage(coverage: dict) -> list[str]:
    """The experts' quantile coverage per cluster at the report levels (PIT / at or below / below)."""
    state = "calibrated (mesp calibrate)" if coverage.get("calibrated") else "not calibrated"
    head = f"{'moe quantile coverage':<40}" + "".join(f"{f'q={q:g}':>22}" for q in REPORT_LEVELS)
    lines = [f"quantile coverage of the experts (moe, {state}): randomized PIT / share at or below / share strictly below",
             head, "-" * len(head)]
    for label, summary in [("all", coverage["overall"]), *coverage["per_cluster"].items()]:
        cells = "".join(f"{_cov(summary[f'{q:g}']):>22}" for q in REPORT_LEVELS)
        lines.append(f"{label[:40]:<40}{cells}")
    return lines


def _cov(entry: dict) -> str:
    return f"{entry['pit']:.3f}/{entry['at_or_below']:.3f}/{entry['below']:.3f}"

