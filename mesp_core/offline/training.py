"""Offline training: cluster daily shapes, tune candidates per cluster, keep the best as experts.

Steps (each shows progress):
  1. split functions: a held-out share never seen here (for `mesp evaluate`), the rest into
     fit/validation functions (selection happens on functions the candidates did not fit on);
  2. K-Shape on the fit functions' daily patterns -> K centroids with descriptions (Experiment 1);
  3. windows cut from every fit/validation series and routed exactly as the online router will
     route them, so each expert learns the traffic it will be asked about;
  4. dense baseline: every trainable family tuned with Optuna on all windows; the top N kept;
  5. per cluster: naive floors, each top dense family fine-tuned on the cluster (warm start) and
     trained from scratch, ranked on the cluster's validation windows; the best is the expert
     (Experiment 2). Residual quantiles of the chosen expert give calibrated upper forecasts;
  6. everything goes into a versioned artifact folder (mesp_core.forecasting.artifact).

Optuna is imported here only, never by the model or the operator.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mesp_core import __version__
from mesp_core.forecasting.artifact import commit_output_dir, prepare_output_dir, save_tensors, sha256_file, write_manifest
from mesp_core.constants import DEFAULT_HORIZON, MIN_CONTEXT, MINUTES_PER_DAY
from mesp_core.offline.metrics import wape
from mesp_core.forecasting.model import NAIVE_KEY, RECENT_CHECK_KEY, RECENT_CHECK_WINDOW, SCALE_MINUTES, repeat_last_hour_forecast, load_model, window_scale
from mesp_core.forecasting.router import Router

log = logging.getLogger("mesp.training")

TRAINABLE_DEFAULT = ("dlinear", "nbeats", "lstm", "patchtst")
BASELINE_FAMILIES = ("seasonal_naive", "repeat_last_hour")
QUANTILE_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)


@dataclass
class TrainConfig:
    """Knobs of `mesp train`; the defaults finish the shared 6,418-function sample in < 15 min on 2 cores."""

    k: int | None = None  # clusters; None = chosen by silhouette over k_range
    k_min: int = 3
    k_max: int = 10
    horizon: int = DEFAULT_HORIZON
    input_size_max: int = 480  # widest context any candidate may ask for
    families: tuple[str, ...] = TRAINABLE_DEFAULT
    dense_trials: int = 3  # Optuna trials per family for the dense baseline
    dense_top_n: int = 2  # dense families kept (and specialised per cluster)
    scratch_trials: int = 1  # per cluster and family: trials trained from scratch
    trial_seconds: float = 25.0  # time cap of one dense trial
    cluster_seconds: float = 8.0  # time cap of one per-cluster candidate
    max_dense_windows: int = 60_000
    max_cluster_windows: int = 20_000
    # Windows cut (and routed) at most, a seeded sample of them: the dense and per-cluster caps above
    # only apply after routing, and 14-day traces give ~700 windows per function (4,000 functions x
    # 14 days peaked at 24 GB without these). The shared sample has 185k / 24k, below both.
    max_fit_windows: int = 250_000
    max_val_windows: int = 60_000
    # K-Shape fits a seeded sample of at most this many fit days (100k x 1440 takes ~200 s and ~4.4 GB;
    # the 14-day public trace has ~390k). The router only needs the centroids.
    max_cluster_days: int = 100_000
    min_cluster_windows: int = 300  # below this a cluster reuses the dense model
    stride: int = 30
    # Selection and residual quantiles use windows with at least this much history: online the
    # operator always has a day of context, and the naive floors need it to see their period.
    val_min_context: int = 720
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    metric: str = "wape"
    loss_weight: str = "sqrt_scale"  # networks' per-window loss weight (see TorchExpert)
    blend_weights: tuple[float, ...] = (0.25, 0.5, 0.75)  # mixes of a cluster's two best tried
    # Recent-error check (mesp_core.forecasting.model): switch ratios tried on the validation functions; the
    # best by WAPE is kept, or none when no ratio beats the experts alone. () = no check.
    recent_check_ratios: tuple[float, ...] = (0.9, 0.7, 0.5, 0.3)
    seed: int = 0
    threads: int = 1  # small networks: a second thread costs more in sync than it gains

    def validate(self) -> "TrainConfig":
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got {self.k_min}..{self.k_max}")
        if not 0.0 <= self.test_fraction < 1.0 or not 0.0 < self.val_fraction < 1.0:
            raise ValueError("test_fraction must be in [0, 1) and val_fraction in (0, 1)")
        if self.input_size_max < SCALE_MINUTES:
            raise ValueError(f"input_size_max must be >= {SCALE_MINUTES}")
        if min(self.max_fit_windows, self.max_val_windows, self.max_dense_windows, self.max_cluster_windows) < 1:
            raise ValueError("window caps must be >= 1")
        if self.max_cluster_days < self.k_max:
            raise ValueError(f"max_cluster_days must be >= k_max ({self.k_max})")
        if self.metric != "wape":
            raise ValueError("only metric 'wape' is supported for selection")
        if any(not 0.0 < r <= 1.0 for r in self.recent_check_ratios):
            raise ValueError(f"recent_check_ratios must be in (0, 1], got {self.recent_check_ratios}")
        from mesp_core.forecasting.experts import EXPERT_FAMILIES

        unknown = [f for f in self.families if f not in EXPERT_FAMILIES or f in BASELINE_FAMILIES]
        if unknown:
            trainable = sorted(set(EXPERT_FAMILIES) - set(BASELINE_FAMILIES))
            raise ValueError(f"unknown trainable families {unknown}; choose from {trainable}")
        return self


@dataclass
class TrainReport:
    out_dir: str
    seconds: float
    k: int
    clusters: list[dict]
    dense_ranking: list[dict]
    n_train_functions: int
    n_val_functions: int
    n_test_functions: int
    stage_seconds: dict = field(default_factory=dict)
    recent_check: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class _Progress:
    """Stage lines on stderr plus tqdm bars where a stage has many steps."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()

    def stage(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.started:6.0f}s] {text}", file=sys.stderr, flush=True)

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.enabled, leave=False, file=sys.stderr)


def key_digest(key: tuple[str, str, str]) -> str:
    return hashlib.sha256("|".join(key).encode()).hexdigest()[:16]


def predict_windows(expert, windows, series=None) -> np.ndarray:
    """Forecasts for windows. Non-trainable experts (the naive floors, blends) read the window's full
    history from `series`, as they do online; networks read the fixed-width window they train on."""
    if not expert.trainable and series is not None:
        contexts = [series[s][:o] for s, o in zip(windows.series, windows.origin)]
    else:
        contexts = windows.x[:, -expert.input_size :]
    with torch.inference_mode():
        return np.clip(np.asarray(expert.predict(contexts), np.float32), 0, None)


def score(expert, windows, series=None) -> float:
    if len(windows) == 0:
        return math.inf
    return float(wape(windows.y, predict_windows(expert, windows, series)))


def residual_quantiles(expert, windows, series=None, levels=QUANTILE_LEVELS) -> np.ndarray:
    """[n_levels, horizon] quantiles of (actual - forecast) / window scale."""
    prediction = predict_windows(expert, windows, series)
    scale = window_scale(windows.x[:, -SCALE_MINUTES:])
    residual = (windows.y - prediction) / scale[:, None]
    return np.quantile(residual, levels, axis=0).astype(np.float32)


def route_windows(router: Router, series: list[np.ndarray], windows) -> tuple[np.ndarray, np.ndarray]:
    """Route each window by the full history before its origin, as the online router would."""
    contexts = [series[s][max(0, o - MINUTES_PER_DAY) : o] for s, o in zip(windows.series, windows.origin)]
    return router.route(contexts)


def _fit_candidate(family: str, params: dict, horizon: int, train, val, seconds: float, seed: int, init_from=None, loss_weight="none"):
    from mesp_core.forecasting.experts import EXPERT_FAMILIES

    expert = EXPERT_FAMILIES[family](horizon=horizon, seed=seed, **{"loss_weight": loss_weight, **params})
    expert.fit(train, val, max_seconds=seconds, init_from=init_from)
    return expert


def tune_family(family: str, train, val, config: TrainConfig, n_trials: int, seconds: float, progress=None):
    """Optuna search over one family's space; returns (best expert, best val WAPE, trials table)."""
    import optuna

    from mesp_core.forecasting.experts import EXPERT_FAMILIES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = EXPERT_FAMILIES[family]
    best: dict = {"expert": None, "score": math.inf}
    trials: list[dict] = []

    def objective(trial):
        params = cls.search_space(trial)
        params = {k: v for k, v in params.items() if k != "input_size" or v <= config.input_size_max}
        expert = _fit_candidate(family, params, config.horizon, train, val, seconds, config.seed + trial.number, loss_weight=config.loss_weight)
        value = score(expert, val)
        trials.append({"trial": trial.number, "params": params, "val_wape": value})
        if value < best["score"]:
            best.update(expert=expert, score=value)
        if progress is not None:
            progress.update(1)
        return value

    sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=max(1, n_trials // 2))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=n_trials, catch=(FloatingPointError,))
    return best["expert"], best["score"], trials


def select_expert(c_train, c_val, baselines: dict, dense_models: dict, top_families, config: TrainConfig, seed: int, val_series=None):
    """Experiment 2 for one cluster: rank the candidates on its validation windows.

    Candidates: the naive floors; each top dense family fine-tuned on the cluster (warm start) and
    trained from scratch; then blends of the two best. A cluster too small to train on gets the
    dense model itself. `val_series` holds the histories c_val's windows were cut from."""
    from mesp_core.forecasting.experts import Blend, build_expert

    if len(c_val) == 0:  # nothing to rank on: keep the floor rather than guess
        return [{"candidate": "seasonal_naive", "family": "seasonal_naive", "val_wape": None}], baselines["seasonal_naive"]
    candidates: dict[str, object] = dict(baselines)
    if len(c_train) >= config.min_cluster_windows:
        for family in top_families:
            dense = dense_models[family]
            tuned = build_expert(dense.config())
            tuned.fit(c_train, c_val, max_seconds=config.cluster_seconds, init_from=dense)
            candidates[f"{family}/finetuned"] = tuned
            for trial in range(config.scratch_trials):
                candidates[f"{family}/scratch{trial}"] = _fit_candidate(
                    family, _hyperparams(dense.config()), config.horizon, c_train, c_val, config.cluster_seconds, seed + 7 * trial,
                )
    else:
        best = top_families[0]
        candidates[f"{best}/dense"] = dense_models[best]
    predictions = {name: predict_windows(expert, c_val, val_series) for name, expert in candidates.items()}
    ranking = [
        {"candidate": name, "family": candidates[name].family, "val_wape": float(wape(c_val.y, p))}
        for name, p in predictions.items()
    ]
    ranking.sort(key=lambda r: r["val_wape"])
    first, second = ranking[0]["candidate"], ranking[1]["candidate"]
    for w in config.blend_weights:  # forecast combination of the two best
        mixed = w * predictions[first] + (1 - w) * predictions[second]
        name = f"blend({first} {w:g}, {second} {1 - w:g})"
        candidates[name] = (first, second, w)
        ranking.append({"candidate": name, "family": "blend", "val_wape": float(wape(c_val.y, mixed))})
    ranking.sort(key=lambda r: r["val_wape"])
    chosen = candidates[ranking[0]["candidate"]]
    if isinstance(chosen, tuple):
        a, b, w = chosen
        chosen = Blend(horizon=config.horizon, members=[candidates[a], candidates[b]], weights=[w, 1 - w])
    return ranking, chosen


def function_split(trace, test_fraction: float, val_fraction: float, seed: int):
    """`mesp train`'s function-level split, (fit, validation, held out) indices, each sorted: held out
    by key hash (split_functions), then a seeded `val_fraction` of the rest for validation."""
    from mesp_core.data.trace import split_functions

    train_idx, test_idx = split_functions(trace, test_fraction=test_fraction, seed=seed)
    shuffled = np.random.default_rng(seed).permutation(train_idx)
    n_val = max(1, int(round(len(shuffled) * val_fraction)))
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val]), test_idx


def train(trace, out_dir, config: TrainConfig | None = None, progress: bool = True) -> TrainReport:
    """Train the mixture on `trace` (an InvocationTrace) and write the artifact to `out_dir`."""
    from mesp_core.forecasting.patterns import cluster_days
    from mesp_core.forecasting.experts import build_expert
    from mesp_core.data.windows import make_windows

    config = (config or TrainConfig()).validate()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    ui = _Progress(progress)
    started = time.monotonic()
    stage_seconds: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        stage_seconds[name] = round(now - since, 1)
        return now

    # 1. split by function: held-out test functions are never looked at below.
    t0 = time.monotonic()
    fit_idx, val_idx, test_idx = function_split(trace, config.test_fraction, config.val_fraction, config.seed)
    if len(fit_idx) < 2:
        raise ValueError(f"too few functions to train on ({len(trace.keys)} in the trace)")
    ui.stage(f"functions: {len(fit_idx)} fit, {len(val_idx)} validation, {len(test_idx)} held out for evaluation")

    # 2. Experiment 1: K-Shape on the fit functions' days.
    fit_trace = trace.subset(fit_idx)
    days, _owner = fit_trace.daily()
    n_fit_days = len(days)
    if n_fit_days > config.max_cluster_days:
        keep = np.sort(np.random.default_rng(config.seed).choice(n_fit_days, config.max_cluster_days, replace=False))
        days = days[keep]
    ui.stage(f"clustering {len(days)}" + (f" (a seeded sample of {n_fit_days})" if len(days) < n_fit_days else "")
             + " daily patterns with K-Shape"
             + (f" (k={config.k})" if config.k else f" (k in {config.k_min}..{config.k_max} by silhouette)"))
    clustering = cluster_days(
        days, k=config.k, k_range=range(config.k_min, config.k_max + 1), random_state=config.seed, progress=progress
    )
    router = Router(clustering.centroids)
    t0 = lap("clustering", t0)
    for c in range(clustering.k):
        ui.stage(f"  cluster {c}: {int((clustering.labels == c).sum())} days — {clustering.descriptions[c]['label']}")

    # 3. windows, routed like online traffic.
    fit_series = [trace.counts[i] for i in fit_idx]
    val_series = [trace.counts[i] for i in val_idx]
    fit_windows = make_windows(fit_series, config.input_size_max, config.horizon, stride=config.stride, min_context=MIN_CONTEXT,
                               rng=config.seed, max_windows=config.max_fit_windows)
    val_windows = make_windows(val_series, config.input_size_max, config.horizon, stride=config.stride, min_context=config.val_min_context,
                               rng=config.seed + 1, max_windows=config.max_val_windows)
    ui.stage(f"routing {len(fit_windows)} fit and {len(val_windows)} validation windows")
    fit_route, _ = route_windows(router, fit_series, fit_windows)
    val_route, val_dist = route_windows(router, val_series, val_windows)
    t0 = lap("windows+routing", t0)

    def capped(windows, limit, seed):
        if len(windows) <= limit:
            return windows
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), size=limit, replace=False))
        return windows.subset(keep)

    # 4. dense baseline: every family tuned on all windows.
    dense_train = capped(fit_windows, config.max_dense_windows, config.seed)
    dense_val = capped(val_windows, config.max_dense_windows // 3, config.seed + 1)
    naive = build_expert({"family": "seasonal_naive", "horizon": config.horizon})
    baselines = {f: build_expert({"family": f, "horizon": config.horizon}) for f in BASELINE_FAMILIES}
    dense_ranking = [{"family": f, "val_wape": score(e, dense_val, val_series), "trials": 0} for f, e in baselines.items()]
    dense_models: dict[str, object] = {}
    bar = ui.bar(len(config.families) * config.dense_trials, "dense HPO")
    for family in config.families:
        ui.stage(f"dense baseline: tuning {family} ({config.dense_trials} trials, <= {config.trial_seconds:.0f}s each)")
        expert, value, trials = tune_family(family, dense_train, dense_val, config, config.dense_trials, config.trial_seconds, bar)
        dense_models[family] = expert
        dense_ranking.append({"family": family, "val_wape": value, "trials": len(trials), "config": expert.config(), "trial_table": trials})
    bar.close()
    dense_ranking.sort(key=lambda r: r["val_wape"])
    trained_rank = [r["family"] for r in dense_ranking if r["family"] in dense_models]
    top_families = trained_rank[: config.dense_top_n]
    dense_best = top_families[0]
    ui.stage("dense ranking: " + ", ".join(f"{r['family']} {r['val_wape']:.3f}" for r in dense_ranking))
    t0 = lap("dense", t0)

    # 5. Experiment 2: per-cluster candidates, best on the cluster's validation windows.
    cluster_entries: list[dict] = []
    cluster_experts: dict[int, object] = {}
    quantiles: dict[str, np.ndarray] = {}
    bar = ui.bar(clustering.k, "experts per cluster")
    for c in range(clustering.k):
        c_train = capped(fit_windows.subset(np.flatnonzero(fit_route == c)), config.max_cluster_windows, config.seed + c)
        c_val = capped(val_windows.subset(np.flatnonzero(val_route == c)), config.max_cluster_windows // 2, config.seed + 100 + c)
        ranking, winner = select_expert(c_train, c_val, baselines, dense_models, top_families, config, seed=config.seed + c, val_series=val_series)
        cluster_experts[c] = winner
        if len(c_val):
            quantiles[f"cluster-{c}"] = residual_quantiles(winner, c_val, val_series)
        member_dist = val_dist[val_route == c]
        cluster_entries.append(
            {
                "id": c,
                "n_days": int((clustering.labels == c).sum()),
                "n_train_windows": len(c_train),
                "n_val_windows": len(c_val),
                "description": clustering.descriptions[c],
                "route_distance_p95": float(np.quantile(member_dist, 0.95)) if len(member_dist) else None,
                "chosen": ranking[0]["candidate"],
                "ranking": ranking,
            }
        )
        ui.stage(f"  cluster {c}: {ranking[0]['candidate']} wins (val WAPE {ranking[0]['val_wape']:.3f}, {len(c_train)} windows)")
        bar.update(1)
    bar.close()
    quantiles[NAIVE_KEY] = residual_quantiles(naive, dense_val, val_series)
    quantiles[RECENT_CHECK_KEY] = residual_quantiles(baselines["repeat_last_hour"], dense_val, val_series)
    for family in top_families:
        quantiles[f"dense-{family}"] = residual_quantiles(dense_models[family], dense_val, val_series)
    t0 = lap("experts", t0)

    # 6. artifact.
    seconds = time.monotonic() - started
    training_keys = [trace.keys[i] for i in np.sort(np.concatenate([fit_idx, val_idx]))]  # all but held out
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mesp_version": __version__,
        "horizon": config.horizon,
        "input_size_max": config.input_size_max,
        "router": {"resolution": router.resolution, "kind": "nearest-centroid cyclic shape correlation"},
        "quantile_levels": list(QUANTILE_LEVELS),
        "training_data": {
            "fingerprint": trace.fingerprint(),
            "n_functions": len(trace.keys),
            "days": list(trace.days),
            "n_fit_functions": int(len(fit_idx)),
            "n_val_functions": int(len(val_idx)),
            "n_test_functions": int(len(test_idx)),
            "n_fit_windows": len(fit_windows),
            "n_val_windows": len(val_windows),
            "split": {"test_fraction": config.test_fraction, "seed": config.seed},
        },
        "training": {"seconds": round(seconds, 1), "stage_seconds": stage_seconds, "config": _config_json(config)},
        "clustering": {"k": clustering.k, "silhouette": {str(k): v for k, v in clustering.silhouette.items()},
                       "n_days": int(len(days)), "n_fit_days": int(n_fit_days)},
        "dense": {"best": dense_best, "ranking": dense_ranking},
        "naive": {"config": naive.config(), "weights": None},
        "clusters": cluster_entries,
    }
    staging = prepare_output_dir(out_dir)
    files = write_experts(staging, manifest, router, cluster_experts, {f: dense_models[f] for f in top_families}, quantiles)
    (staging / "training_keys.txt").write_text("".join(key_digest(k) + "\n" for k in training_keys))
    files["training_keys.txt"] = sha256_file(staging / "training_keys.txt")
    manifest["files"] = files
    write_manifest(staging, manifest)
    # 7. the recent-error check, tuned on the validation functions with the experts as written.
    ui.stage("recent-error check: choosing the switch ratio on validation functions")
    manifest["recent_check"] = choose_recent_check(load_model(staging), np.stack(val_series), config.recent_check_ratios, config.horizon)
    ui.stage("recent-error check: " + describe_recent_check(manifest["recent_check"]))
    lap("recent_check", t0)
    seconds = time.monotonic() - started
    manifest["training"]["seconds"] = round(seconds, 1)
    write_manifest(staging, manifest)
    commit_output_dir(staging, out_dir)
    ui.stage(f"model written to {out_dir} in {seconds:.0f}s")
    return TrainReport(
        out_dir=str(out_dir),
        seconds=round(seconds, 1),
        k=clustering.k,
        clusters=[{k: v for k, v in e.items() if k != "expert"} for e in cluster_entries],
        dense_ranking=[{k: v for k, v in r.items() if k != "trial_table"} for r in dense_ranking],
        n_train_functions=int(len(fit_idx)),
        n_val_functions=int(len(val_idx)),
        n_test_functions=int(len(test_idx)),
        stage_seconds=stage_seconds,
        recent_check=manifest["recent_check"],
    )


def choose_recent_check(model, counts: np.ndarray, ratios, horizon: int = DEFAULT_HORIZON) -> dict:
    """Pick the recent-error check's switch ratio by WAPE on `counts` (validation functions).

    Same protocol as `mesp evaluate`: origins every 60 minutes from 720 to 1380 of the last day,
    context = every minute before the origin. Each candidate ratio is scored on the same
    forecasts; the check is enabled only if some ratio beats the experts alone."""
    import copy

    from mesp_core.offline.evaluation import DEFAULT_ORIGINS

    model = copy.copy(model)
    model.recent_check_ratio = None  # score the experts alone, whatever the model's manifest says
    day_offset = max(0, (counts.shape[1] // MINUTES_PER_DAY - 1) * MINUTES_PER_DAY)
    origins = [day_offset + o for o in DEFAULT_ORIGINS]
    origins = [o for o in origins if o >= RECENT_CHECK_WINDOW + MIN_CONTEXT and o + horizon <= counts.shape[1]]
    if not ratios or not origins or len(counts) == 0:
        return {"enabled": False, "reason": "no ratios to try or validation series too short", "val_wape": {}}
    actual, expert, alternative, model_err, alt_err = [], [], [], [], []
    for origin in origins:
        context = counts[:, :origin]
        point = model.forecast(context, horizon, approach="moe")
        errors = model.recent_hour(context, "moe").errors()
        actual.append(counts[:, origin : origin + horizon])
        expert.append(point)
        alternative.append(repeat_last_hour_forecast(list(context), horizon))
        model_err.append(errors[0])
        alt_err.append(errors[1])
    y, f_exp, f_alt = (np.concatenate(a) for a in (actual, expert, alternative))
    m_err, a_err = np.concatenate(model_err), np.concatenate(alt_err)
    scores = {"off": float(wape(y, f_exp))}
    for ratio in ratios:
        with np.errstate(invalid="ignore"):
            switch = a_err < ratio * m_err
        scores[f"{ratio:g}"] = float(wape(y, np.where(switch[:, None], f_alt, f_exp)))
    best = min(scores, key=lambda k: (scores[k], k != "off"))  # ties keep the experts alone
    entry = {"enabled": best != "off", "window": RECENT_CHECK_WINDOW, "alternative": "repeat_last_hour",
             "val_wape": scores, "n_val_functions": int(len(counts)), "origins": len(origins)}
    if best != "off":
        entry["switch_ratio"] = float(best)
    return entry


def describe_recent_check(entry: dict) -> str:
    scores = ", ".join(f"{k} {v:.3f}" for k, v in entry.get("val_wape", {}).items())
    if not entry.get("enabled"):
        return f"off ({entry.get('reason') or 'no ratio beats the experts alone'}; val WAPE {scores or 'n/a'})"
    return f"switch ratio {entry['switch_ratio']:g} (val WAPE {scores})"


def write_experts(model_dir: Path, manifest: dict, router: Router, cluster_experts: dict, dense_models: dict, quantiles: dict) -> dict:
    """Write centroids, expert weights and quantiles; fill the manifest's expert entries. Returns file hashes."""
    files = {"centroids.safetensors": save_tensors(model_dir / "centroids.safetensors", {"centroids": torch.from_numpy(router.full_centroids)})}
    for entry in manifest["clusters"]:
        expert = cluster_experts[entry["id"]]
        entry["expert"] = _save_expert(model_dir, f"experts/cluster-{entry['id']}.safetensors", expert, files)
    manifest["dense"]["models"] = {
        family: _save_expert(model_dir, f"dense/{family}.safetensors", expert, files) for family, expert in dense_models.items()
    }
    files["quantiles.safetensors"] = save_tensors(
        model_dir / "quantiles.safetensors", {name: torch.from_numpy(np.ascontiguousarray(q)) for name, q in quantiles.items()}
    )
    return files


def _save_expert(model_dir: Path, relative: str, expert, files: dict) -> dict:
    state = expert.state_dict()
    if not state:
        return {"config": expert.config(), "weights": None}
    files[relative] = save_tensors(model_dir / relative, state)
    return {"config": expert.config(), "weights": relative}


def _hyperparams(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("family", "horizon", "seed")}


def _config_json(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def extend(model_dir, trace, out_dir, threshold: float | None = None, k: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Add clusters K, K+1, ... for daily patterns far from every centroid and train only their experts.

    The existing experts' weight files are copied byte for byte; only the centroids, the quantile
    table and the manifest are rewritten. The source folder is never modified."""
    import shutil

    from mesp_core.forecasting.artifact import read_manifest
    from mesp_core.forecasting.patterns import cluster_days
    from mesp_core.forecasting.sbd import is_flat
    from mesp_core.forecasting.experts import build_expert
    from mesp_core.data.windows import make_windows

    ui = _Progress(progress)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise ValueError("--out must differ from --model: the existing model is kept as it is")
    model = load_model(model_dir)
    manifest = read_manifest(model_dir)
    config = TrainConfig(**{**_train_config_fields(manifest), "seed": seed}).validate()
    torch.set_num_threads(config.threads)

    days, owner = trace.daily()
    live = ~is_flat(days)
    distance = np.full(len(days), np.nan, dtype=np.float32)
    if live.any():
        distance[live] = np.nanmin(model.router.distances(days[live]), axis=1)
    if threshold is None:
        p95 = [c["route_distance_p95"] for c in manifest["clusters"] if c.get("route_distance_p95") is not None]
        threshold = float(max(p95)) if p95 else 0.5
    far = live & (distance > threshold)
    report = {"n_days": int(len(days)), "n_far_days": int(far.sum()), "threshold": float(threshold), "added": []}
    staging = prepare_output_dir(out_dir)
    for item in model_dir.iterdir():  # byte-identical copies of everything already trained
        target = staging / item.name
        shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)
    if far.sum() < 2:
        commit_output_dir(staging, out_dir)
        ui.stage(f"no new pattern (distance threshold {threshold:.3f}); model copied unchanged to {out_dir}")
        return report

    ui.stage(f"{int(far.sum())} daily patterns are far from every centroid: clustering them")
    n_far = int(far.sum())
    if k is None and n_far < 6:
        k = 1  # too few days to compare several splits by silhouette
    new = cluster_days(days[far], k=k, k_range=range(2, min(4, n_far - 1) + 1), random_state=seed, progress=progress)
    base_k = len(manifest["clusters"])
    router = Router(np.concatenate([model.router.full_centroids, new.centroids]), resolution=model.router.resolution)

    functions = np.unique(owner[far])
    rng = np.random.default_rng(seed)
    val_functions = set(rng.choice(functions, size=max(1, len(functions) // 5), replace=False).tolist())
    fit_rows = [i for i in functions if i not in val_functions]
    val_rows = sorted(val_functions)
    fit_series = [trace.counts[i] for i in fit_rows]
    val_series = [trace.counts[i] for i in val_rows]
    fit_windows = make_windows(fit_series, config.input_size_max, config.horizon, stride=config.stride,
                               rng=config.seed, max_windows=config.max_fit_windows)
    val_windows = make_windows(val_series, config.input_size_max, config.horizon, stride=config.stride, min_context=config.val_min_context,
                               rng=config.seed + 1, max_windows=config.max_val_windows)
    fit_route, _ = route_windows(router, fit_series, fit_windows)
    val_route, val_dist = route_windows(router, val_series, val_windows)

    baselines = {f: build_expert({"family": f, "horizon": config.horizon}) for f in BASELINE_FAMILIES}
    dense_models = dict(model.dense_experts)
    top_families = [model.dense_best] + [f for f in dense_models if f != model.dense_best]
    quantiles = dict(model.residual_quantiles)

    for j in range(new.k):
        c = base_k + j
        c_train = fit_windows.subset(np.flatnonzero(fit_route == c))
        c_val = val_windows.subset(np.flatnonzero(val_route == c))
        ranking, winner = select_expert(c_train, c_val, baselines, dense_models, top_families, config, seed=seed + c, val_series=val_series)
        if len(c_val):
            quantiles[f"cluster-{c}"] = residual_quantiles(winner, c_val, val_series)
        member_dist = val_dist[val_route == c]
        entry = {
            "id": c,
            "n_days": int((new.labels == j).sum()),
            "n_train_windows": len(c_train),
            "n_val_windows": len(c_val),
            "description": new.descriptions[j],
            "route_distance_p95": float(np.quantile(member_dist, 0.95)) if len(member_dist) else None,
            "chosen": ranking[0]["candidate"],
            "ranking": ranking,
            "added_by": "extend",
        }
        entry["expert"] = _save_expert(staging, f"experts/cluster-{c}.safetensors", winner, manifest["files"])
        manifest["clusters"].append(entry)
        report["added"].append({k: v for k, v in entry.items() if k != "expert"})
        ui.stage(f"  new cluster {c}: {entry['chosen']} — {entry['description']['label']}")

    manifest["files"]["centroids.safetensors"] = save_tensors(
        staging / "centroids.safetensors", {"centroids": torch.from_numpy(router.full_centroids)}
    )
    manifest["files"]["quantiles.safetensors"] = save_tensors(
        staging / "quantiles.safetensors", {name: torch.from_numpy(np.ascontiguousarray(q)) for name, q in quantiles.items()}
    )
    manifest.setdefault("extensions", []).append(
        {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fingerprint": trace.fingerprint(),
            "threshold": float(threshold),
            "added_clusters": [c["id"] for c in report["added"]],
        }
    )
    manifest.pop("format", None)
    manifest.pop("format_version", None)
    write_manifest(staging, manifest)
    commit_output_dir(staging, out_dir)
    ui.stage(f"extended model written to {out_dir}")
    return report


def _train_config_fields(manifest: dict) -> dict:
    """The training config recorded in a manifest, limited to fields this version knows."""
    recorded = manifest.get("training", {}).get("config", {})
    known = TrainConfig.__dataclass_fields__
    fields = {k: v for k, v in recorded.items() if k in known}
    if "families" in fields:
        fields["families"] = tuple(fields["families"])
    return fields
