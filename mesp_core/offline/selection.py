"""Experiment 2's machinery: score candidates on windows, tune a family with Optuna, pick a cluster's expert.

Optuna is imported here (lazily) and in nothing the operator loads.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.forecasting.model import SCALE_MINUTES, window_scale
from mesp_core.forecasting.router import Router
from mesp_core.offline.config import QUANTILE_LEVELS, TrainConfig
from mesp_core.offline.metrics import wape


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
    return route_at(router, series, windows.series, windows.origin)


def route_at(router: Router, series, rows, origins) -> tuple[np.ndarray, np.ndarray]:
    """(cluster, distance) of series[rows[i]] routed on the day before origins[i]."""
    return router.route([series[r][max(0, o - MINUTES_PER_DAY): o] for r, o in zip(rows, origins)])


def cut_and_route(counts, rows, origin, input_size: int, horizon: int, router: Router):
    """Map function (mesp_core.offline.trace_access): each window's context x, target y and route,
    for windows at origin[i] of function rows[i] (rows grouped), as make_windows + route_windows."""
    from mesp_core.data.windows import cut_windows

    x, y = cut_windows(counts, rows, origin, input_size, horizon)
    return x, y, route_at(router, counts, rows, origin)[0]


def cap_windows(windows, limit: int, seed: int):
    """At most `limit` windows, a seeded sample in their original order."""
    if len(windows) <= limit:
        return windows
    keep = np.sort(np.random.default_rng(seed).choice(len(windows), size=limit, replace=False))
    return windows.subset(keep)


def fit_candidate(family: str, params: dict, train, val, config: TrainConfig, seed: int, epochs: int, init_from=None):
    """Build and fit one candidate on a budget of counts: `epochs`, the config's patience, and the
    family's window cap (a seeded sample). Only `config.max_fit_seconds`, off by default, is a clock."""
    from mesp_core.forecasting.experts import EXPERT_FAMILIES

    hyperparams = {"loss_weight": config.loss_weight, **params, "max_epochs": epochs, "patience": config.patience}
    expert = EXPERT_FAMILIES[family](horizon=config.horizon, **{**hyperparams, "seed": seed})
    train = cap_windows(train, config.family_windows(family, len(train)), seed)
    if val is not None and len(val):
        val = cap_windows(val, config.family_windows(family, len(val)), seed + 1)
    expert.fit(train, val, max_seconds=config.max_fit_seconds, init_from=init_from)
    return expert


def fit_summary(expert) -> dict:
    """What a fit spent, for the manifest: epochs run, why it stopped, and whether a clock cut it short."""
    report = expert.fit_report_
    return {"epochs": report["epochs"], "stopped": report["stopped"], "cut_short": report["cut_short"]}


def tune_family(family: str, train, val, config: TrainConfig, n_trials: int, progress=None):
    """Optuna search over one family's space (TPE, seeded); returns (best expert, best val WAPE, trials table).

    Each trial trains for at most `config.dense_epochs` epochs with seed `config.seed + trial`."""
    import optuna

    from mesp_core.forecasting.experts import EXPERT_FAMILIES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = EXPERT_FAMILIES[family]
    best: dict = {"expert": None, "score": math.inf}
    trials: list[dict] = []

    def objective(trial):
        params = cls.search_space(trial)
        params = {k: v for k, v in params.items() if k != "input_size" or v <= config.input_size_max}
        expert = fit_candidate(family, params, train, val, config, config.seed + trial.number, config.dense_epochs)
        value = score(expert, val)
        trials.append({"trial": trial.number, "params": params, "val_wape": value, **fit_summary(expert)})
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
    from mesp_core.forecasting.experts import Blend

    if len(c_val) == 0:  # nothing to rank on: keep the floor rather than guess
        return [{"candidate": "seasonal_naive", "family": "seasonal_naive", "val_wape": None}], baselines["seasonal_naive"]
    candidates: dict[str, object] = dict(baselines)
    if len(c_train) >= config.min_cluster_windows:
        for family in top_families:
            dense = dense_models[family]
            hyperparams = _hyperparams(dense.config())
            candidates[f"{family}/finetuned"] = fit_candidate(
                family, hyperparams, c_train, c_val, config, dense.hyperparams["seed"], config.cluster_epochs, init_from=dense,
            )
            for trial in range(config.scratch_trials):
                candidates[f"{family}/scratch{trial}"] = fit_candidate(
                    family, hyperparams, c_train, c_val, config, seed + 7 * trial, config.cluster_epochs,
                )
        fitted = set(candidates) - set(baselines)
    else:
        fitted = set()
        best = top_families[0]
        candidates[f"{best}/dense"] = dense_models[best]
    predictions = {name: predict_windows(expert, c_val, val_series) for name, expert in candidates.items()}
    ranking = [
        {"candidate": name, "family": candidates[name].family, "val_wape": float(wape(c_val.y, p)),
         **(fit_summary(candidates[name]) if name in fitted else {})}
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


def _hyperparams(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("family", "horizon", "seed")}
