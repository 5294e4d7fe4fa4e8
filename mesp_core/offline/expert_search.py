"""The independent units of `train`'s expert search, written once for one process and for Ray.

Two stages of training are many searches that do not look at each other:
- the dense baseline: one Optuna study per trainable family (`dense_study`);
- Experiment 2: one expert search per cluster (`cluster_search`), after the dense stage.

Each unit is a pure function of (its item, the stage's shared data): its budgets are counts, its
fits and samplers are seeded, and it runs on one torch thread, so it gives the same result in
this process or in a Ray task on another machine. A stage runs its units through a runner,
`runner(unit, items, shared, bar, units_per_item) -> results in item order`: `run_in_process`
here, `mesp_core.distributed.training.run_on_ray` for `mesp train --ray`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mesp_core.offline.config import TrainConfig
from mesp_core.offline.selection import cap_windows, residual_quantiles, select_expert, tune_family


@dataclass
class DenseData:
    """What every dense family study reads: the capped fit and validation windows."""

    config: TrainConfig
    train: object  # WindowSet
    val: object


@dataclass
class ClusterData:
    """What every per-cluster search reads: all windows with their routes, the validation series
    (the naive floors read full histories), the baselines and the dense stage's models."""

    config: TrainConfig
    fit_windows: object  # WindowSet
    val_windows: object
    fit_route: np.ndarray
    val_route: np.ndarray
    val_series: list
    baselines: dict
    dense_models: dict
    top_families: list = field(default_factory=list)


@dataclass
class ClusterExpert:
    """One cluster's search: its candidates ranked, the winner, the winner's residual quantiles
    on the cluster's validation windows (None without any), and the window counts."""

    ranking: list
    winner: object
    quantiles: np.ndarray | None
    n_train_windows: int
    n_val_windows: int


def dense_study(family: str, data: DenseData, progress=None):
    """The dense baseline's Optuna study of one family: (best expert, its val WAPE, trials table)."""
    return tune_family(family, data.train, data.val, data.config, data.config.dense_trials, progress)


def cluster_search(c: int, data: ClusterData, progress=None) -> ClusterExpert:
    """Experiment 2 for cluster `c`: its (capped) windows, the candidates ranked, the winner."""
    config = data.config
    c_train = cap_windows(data.fit_windows.subset(np.flatnonzero(data.fit_route == c)), config.max_cluster_windows, config.seed + c)
    c_val = cap_windows(data.val_windows.subset(np.flatnonzero(data.val_route == c)), config.max_cluster_windows // 2,
                        config.seed + 100 + c)
    ranking, winner = select_expert(c_train, c_val, data.baselines, data.dense_models, data.top_families, config,
                                    seed=config.seed + c, val_series=data.val_series)
    quantiles = residual_quantiles(winner, c_val, data.val_series) if len(c_val) else None
    if progress is not None:
        progress.update(1)
    return ClusterExpert(ranking, winner, quantiles, len(c_train), len(c_val))


def run_in_process(unit, items, shared, bar=None, units_per_item: int = 1) -> list:
    """The runner of one process: the units one after another, each updating `bar` as it goes."""
    return [unit(item, shared, bar) for item in items]
