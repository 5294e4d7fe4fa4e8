"""Adding pattern K+1 without retraining: new clusters for days far from every centroid, new experts only."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mesp_core.forecasting.artifact import commit_output_dir, prepare_output_dir, save_tensors, write_manifest
from mesp_core.forecasting.model import load_model
from mesp_core.forecasting.router import Router
from mesp_core.offline.config import BASELINE_FAMILIES, TrainConfig, train_config_fields
from mesp_core.offline.progress import Progress
from mesp_core.offline.selection import residual_quantiles, route_windows, select_expert
from mesp_core.offline.training import FIT_THREADS, save_expert


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

    ui = Progress(progress)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise ValueError("--out must differ from --model: the existing model is kept as it is")
    model = load_model(model_dir, backend="torch")  # offline: the torch backend, as training itself
    manifest = read_manifest(model_dir)
    config = TrainConfig(**{**train_config_fields(manifest), "seed": seed}).validate()
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
    torch.set_num_threads(FIT_THREADS)  # routing and fits, as in training: results independent of threads

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

    cut_short: list[str] = []
    for j in range(new.k):
        c = base_k + j
        c_train = fit_windows.subset(np.flatnonzero(fit_route == c))
        c_val = val_windows.subset(np.flatnonzero(val_route == c))
        ranking, winner = select_expert(c_train, c_val, baselines, dense_models, top_families, config, seed=seed + c, val_series=val_series)
        if len(c_val):
            quantiles[f"cluster-{c}"] = residual_quantiles(winner, c_val, val_series)
        cut_short += [f"cluster {c} {r['candidate']}" for r in ranking if r.get("cut_short")]
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
        entry["expert"] = save_expert(staging, f"experts/cluster-{c}.safetensors", winner, manifest["files"])
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
            "cut_short": cut_short,
        }
    )
    manifest.pop("format", None)
    manifest.pop("format_version", None)
    write_manifest(staging, manifest)
    commit_output_dir(staging, out_dir)
    ui.stage(f"extended model written to {out_dir}")
    return report
