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
  6. everything goes into a versioned artifact folder (mesp_core.forecasting.artifact);
  7. the recent-error check is tuned on the validation functions, then the experts' quantiles are
     calibrated per group on them (mesp_core.offline.calibration);
  8. the floor stage (mesp_core.offline.floor_training): a demand head fitted on the fit functions,
     each cluster's default floor policy per cold-start cost chosen on the validation functions.

Steps 4 and 5 are independent units (one Optuna study per family, one search per cluster,
mesp_core.offline.expert_search) run by a runner: one after another here, in parallel on Ray with
`mesp train --ray` (mesp_core.distributed.training), with the same results.

Optuna is imported only by mesp_core.offline.selection, never by the model or the operator.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mesp_core import __version__
from mesp_core.constants import MIN_CONTEXT
from mesp_core.forecasting.artifact import commit_output_dir, prepare_output_dir, save_tensors, sha256_file, write_manifest
from mesp_core.forecasting.model import NAIVE_KEY, RECENT_CHECK_KEY, load_model
from mesp_core.forecasting.router import Router
from mesp_core.offline.config import BASELINE_FAMILIES, QUANTILE_LEVELS, TrainConfig, config_json
from mesp_core.offline.expert_search import ClusterData, DenseData, cluster_search, dense_study, run_in_process
from mesp_core.offline.progress import Progress, peak_rss_mb
from mesp_core.offline.recent_check import choose_recent_check, describe_recent_check
from mesp_core.offline.selection import cap_windows, cut_and_route, residual_quantiles, route_windows, score
from mesp_core.offline.split import function_split, key_digest
from mesp_core.offline.trace_access import TraceAccess, as_trace_access, daily_sample, take_days

log = logging.getLogger("mesp.training")


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
    # This process's peak RSS (MiB) when each stage ended: a stage that raised it shows its own peak
    # (machine-dependent like the seconds, so in the report only, not in the manifest). A Ray driver's
    # RSS also counts the object-store pages it maps.
    stage_peak_rss_mb: dict = field(default_factory=dict)
    recent_check: dict = field(default_factory=dict)
    cut_short: list = field(default_factory=list)  # fits that max_fit_seconds ended early (load-dependent)

    def to_json(self) -> dict:
        return asdict(self)


def train(trace, out_dir, config: TrainConfig | None = None, progress: bool = True, run_tasks=None) -> TrainReport:
    """Train the mixture on `trace` and write the artifact to `out_dir`.

    `trace`: an InvocationTrace, or a TraceAccess (mesp_core.offline.trace_access) such as the
    Ray-sharded one of `mesp train --ray`, which also runs K-Shape on the shards; the same model.

    A seed and the data fix the model: every budget is a count, every fit is seeded, and networks
    run on one torch thread (`config.threads` only speeds up K-Shape's large batched operations).
    `run_tasks`: the runner of the dense family studies and the per-cluster expert searches
    (`mesp_core.offline.expert_search`; the Ray one runs them in parallel with the same results);
    default one after another in this process."""
    config = (config or TrainConfig()).validate()
    with torch_threads(config.threads):
        return _train(as_trace_access(trace), out_dir, config, progress, run_tasks or run_in_process)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to `n` for a block, the caller's restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Routing, fitting and scoring run on one thread: some kernels split reductions by thread count, so
# another count would change the last bits of distances and losses and, through routing, early
# stopping and ranking, the model.
FIT_THREADS = 1


def _train(trace: TraceAccess, out_dir, config: TrainConfig, progress: bool, run_tasks) -> TrainReport:
    from mesp_core.forecasting.experts import build_expert
    from mesp_core.data.windows import WindowSet, make_windows, window_origins

    torch.manual_seed(config.seed)
    ui = Progress(progress)
    started = time.monotonic()
    stage_seconds: dict[str, float] = {}
    stage_rss: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        stage_seconds[name] = round(now - since, 1)
        stage_rss[name] = round(peak_rss_mb(), 1)
        return now

    # 1. split by function: held-out test functions are never looked at below.
    t0 = time.monotonic()
    fit_idx, val_idx, test_idx = function_split(trace, config.test_fraction, config.val_fraction, config.seed)
    if len(fit_idx) < 2:
        raise ValueError(f"too few functions to train on ({len(trace.keys)} in the trace)")
    val_used = val_idx  # the validation functions read whole: a seeded sample when there are many
    if len(val_idx) > config.max_val_functions:
        val_used = np.sort(np.random.default_rng(config.seed + 2).choice(val_idx, config.max_val_functions, replace=False))
    ui.stage(f"functions: {len(fit_idx)} fit, {len(val_idx)} validation"
             + (f" ({len(val_used)} of them read whole)" if len(val_used) < len(val_idx) else "")
             + f", {len(test_idx)} held out for evaluation")

    # 2. Experiment 1: K-Shape on the fit functions' days (a seeded sample of at most max_cluster_days).
    day_rows, day_index, n_fit_days = daily_sample(trace, fit_idx, config.max_cluster_days, config.seed)
    n_days = len(day_rows)
    ui.stage(f"clustering {n_days}" + (f" (a seeded sample of {n_fit_days})" if n_days < n_fit_days else "")
             + " daily patterns with K-Shape"
             + (f" (k={config.k})" if config.k else f" (k in {config.k_min}..{config.k_max} by silhouette)"))
    clustering = trace.cluster_days(
        trace.map_rows_in_place(take_days, day_rows, day_index),
        k=config.k, k_range=range(config.k_min, config.k_max + 1), random_state=config.seed, progress=progress,
    )
    router = Router(clustering.centroids)
    t0 = lap("clustering", t0)
    torch.set_num_threads(FIT_THREADS)  # train() gives the caller's count back at the end
    for c in range(clustering.k):
        ui.stage(f"  cluster {c}: {int((clustering.labels == c).sum())} days — {clustering.descriptions[c]['label']}")

    # 3. windows, routed like online traffic: the fit functions' cut where their series are, the
    # validation functions' from their whole series (the naive floors read them too).
    series_idx, origin = window_origins([trace.n_minutes] * len(fit_idx), config.horizon, stride=config.stride,
                                        min_context=MIN_CONTEXT, rng=config.seed, max_windows=config.max_fit_windows)
    val_counts = trace.series(val_used)
    val_series = list(val_counts)
    val_windows = make_windows(val_series, config.input_size_max, config.horizon, stride=config.stride, min_context=config.val_min_context,
                               rng=config.seed + 1, max_windows=config.max_val_windows)
    ui.stage(f"routing {len(series_idx)} fit and {len(val_windows)} validation windows")
    x, y, fit_route = trace.map_rows(cut_and_route, fit_idx[series_idx], origin, input_size=config.input_size_max,
                                     horizon=config.horizon, router=router)
    fit_windows = WindowSet(x, y, series_idx, origin)
    del x, y
    val_route, val_dist = route_windows(router, val_series, val_windows)
    t0 = lap("windows+routing", t0)

    # 4. dense baseline: every family tuned on all windows.
    dense_train = cap_windows(fit_windows, config.max_dense_windows, config.seed)
    dense_val = cap_windows(val_windows, config.max_dense_windows // 3, config.seed + 1)
    naive = build_expert({"family": "seasonal_naive", "horizon": config.horizon})
    baselines = {f: build_expert({"family": f, "horizon": config.horizon}) for f in BASELINE_FAMILIES}
    dense_ranking = [{"family": f, "val_wape": score(e, dense_val, val_series), "trials": 0} for f, e in baselines.items()]
    cut_short: list[str] = []  # fits that config.max_fit_seconds ended early
    bar = ui.bar(len(config.families) * config.dense_trials, "dense HPO")
    for family in config.families:
        cap = config.family_windows(family, len(dense_train))
        ui.stage(f"dense baseline: tuning {family} ({config.dense_trials} trials, <= {config.dense_epochs} epochs each"
                 + (f", on a seeded sample of {cap} windows)" if cap < len(dense_train) else ")"))
    studies = run_tasks(dense_study, list(config.families), DenseData(config, dense_train, dense_val), bar, config.dense_trials)
    dense_models: dict[str, object] = {}
    for family, (expert, value, trials) in zip(config.families, studies):
        cut_short += [f"dense {family} trial {t['trial']}" for t in trials if t["cut_short"]]
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
    shared = ClusterData(config, fit_windows, val_windows, fit_route, val_route, val_series, baselines, dense_models, top_families)
    searches = run_tasks(cluster_search, list(range(clustering.k)), shared, bar, 1)
    for c, found in enumerate(searches):
        ranking = found.ranking
        cluster_experts[c] = found.winner
        cut_short += [f"cluster {c} {r['candidate']}" for r in ranking if r.get("cut_short")]
        if found.quantiles is not None:
            quantiles[f"cluster-{c}"] = found.quantiles
        member_dist = val_dist[val_route == c]
        cluster_entries.append(
            {
                "id": c,
                "n_days": int((clustering.labels == c).sum()),
                "n_train_windows": found.n_train_windows,
                "n_val_windows": found.n_val_windows,
                "description": clustering.descriptions[c],
                "route_distance_p95": float(np.quantile(member_dist, 0.95)) if len(member_dist) else None,
                "chosen": ranking[0]["candidate"],
                "ranking": ranking,
            }
        )
        if ranking[0]["val_wape"] is None:  # no validation window routed here: the floor, unranked
            ui.stage(f"  cluster {c}: no validation windows, {ranking[0]['candidate']} kept ({found.n_train_windows} windows)")
        else:
            ui.stage(f"  cluster {c}: {ranking[0]['candidate']} wins (val WAPE {ranking[0]['val_wape']:.3f}, "
                     f"{found.n_train_windows} windows)")
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
            "n_val_functions_read_whole": int(len(val_used)),  # max_val_functions' sample of them
            "n_test_functions": int(len(test_idx)),
            "n_fit_windows": len(fit_windows),
            "n_val_windows": len(val_windows),
            "split": {"test_fraction": config.test_fraction, "seed": config.seed},
        },
        # Only `seconds`, `stage_seconds` and `created` depend on the machine; `cut_short` lists the fits
        # a wall-clock cap (config.max_fit_seconds, off by default) ended early, which makes them so too.
        "training": {"seconds": round(seconds, 1), "stage_seconds": stage_seconds, "config": config_json(config),
                     "fit_threads": FIT_THREADS, "cut_short": cut_short},
        "clustering": {"k": clustering.k, "silhouette": {str(k): v for k, v in clustering.silhouette.items()},
                       "n_days": int(n_days), "n_fit_days": int(n_fit_days)},
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
    manifest["recent_check"] = choose_recent_check(load_model(staging, backend="torch"), val_counts, config.recent_check_ratios, config.horizon)
    ui.stage("recent-error check: " + describe_recent_check(manifest["recent_check"]))
    t0 = lap("recent_check", t0)
    write_manifest(staging, manifest)
    # 7b. the experts' quantiles calibrated per group on the validation functions, with the check in place.
    if config.calibrate_quantiles:
        from mesp_core.offline.calibration import CalibrationConfig, describe_calibration, fit_calibration, usable_origins

        calibration_config = CalibrationConfig(horizon=config.horizon, seed=config.seed)
        if usable_origins(val_counts.shape[1], config.horizon):
            ui.stage("quantile calibration: fitting per-group maps on validation functions")
            calibration, details = fit_calibration(load_model(staging, backend="torch"), val_counts, calibration_config)
            manifest["quantile_calibration"] = calibration.to_manifest(**details)
            ui.stage(describe_calibration(manifest["quantile_calibration"]))
            write_manifest(staging, manifest)
        else:
            ui.stage("quantile calibration: skipped (the trace leaves no origin of its last day a full horizon)")
        t0 = lap("quantile_calibration", t0)
    # 8. the floor stage: demand head on fit functions, default floors chosen on validation functions.
    if config.floor_stage:
        from mesp_core.forecasting.artifact import read_manifest
        from mesp_core.offline.floor_training import FloorConfig, train_floor

        floor_config = FloorConfig(origins=config.floor_origins, epochs=config.floor_epochs,
                                   max_val_functions=config.floor_val_functions, seed=config.seed)
        train_floor(staging, trace, fit_idx, val_idx, floor_config, progress)
        manifest = read_manifest(staging)
        lap("floor", t0)
        manifest["training"]["stage_seconds"] = stage_seconds
    seconds = time.monotonic() - started
    manifest["training"]["seconds"] = round(seconds, 1)
    write_manifest(staging, manifest)
    commit_output_dir(staging, out_dir)
    ui.stage(f"model written to {out_dir} in {seconds:.0f}s")
    if cut_short:
        ui.stage(f"note: max_fit_seconds cut {len(cut_short)} fit(s) short, so this model depends on the machine's load "
                 "(listed in the manifest's training.cut_short)")
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
        stage_peak_rss_mb=stage_rss,
        recent_check=manifest["recent_check"],
        cut_short=cut_short,
    )


def write_experts(model_dir: Path, manifest: dict, router: Router, cluster_experts: dict, dense_models: dict, quantiles: dict) -> dict:
    """Write centroids, expert weights and quantiles; fill the manifest's expert entries. Returns file hashes."""
    files = {"centroids.safetensors": save_tensors(model_dir / "centroids.safetensors", {"centroids": torch.from_numpy(router.full_centroids)})}
    for entry in manifest["clusters"]:
        expert = cluster_experts[entry["id"]]
        entry["expert"] = save_expert(model_dir, f"experts/cluster-{entry['id']}.safetensors", expert, files)
    manifest["dense"]["models"] = {
        family: save_expert(model_dir, f"dense/{family}.safetensors", expert, files) for family, expert in dense_models.items()
    }
    files["quantiles.safetensors"] = save_tensors(
        model_dir / "quantiles.safetensors", {name: torch.from_numpy(np.ascontiguousarray(q)) for name, q in quantiles.items()}
    )
    return files


def save_expert(model_dir: Path, relative: str, expert, files: dict) -> dict:
    state = expert.state_dict()
    if not state:
        return {"config": expert.config(), "weights": None}
    files[relative] = save_tensors(model_dir / relative, state)
    return {"config": expert.config(), "weights": relative}
