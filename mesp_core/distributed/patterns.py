"""Experiment 1 over shards: `cluster_days` step for step, with the days left in the shards.

Only what `cluster_days` reads from the whole set comes to the driver: which days are flat (one
flag a day), the rows its seeded samples pick (silhouette, choosing K: about 2,000 days) and up to
500 members per cluster for the description. K-Shape itself is `ShardedKShape`. The result equals
`cluster_days(np.concatenate(shards), ...)`."""

from __future__ import annotations

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.distributed.engine import remote, require_ray
from mesp_core.distributed.kshape import ShardedKShape
from mesp_core.forecasting.patterns import (
    ClusteringResult, choose_k, clustering_result, describe_centroid, fit_with_progress, fitted_silhouette,
)
from mesp_core.forecasting.sbd import FLOAT64_MAX_VALUES, _as_series_matrix, is_flat, znormalize

_DESCRIBE_MEMBERS = 500  # describe_centroid looks at this many members at most


def _flat_rows(days):
    return is_flat(_as_series_matrix(days, "days")), np.shape(days)


def _live_normalised(days, flat, dtype: str):
    live = np.flatnonzero(~np.asarray(flat))
    return znormalize(np.asarray(days)[live]).astype(dtype)


def _take(rows_source, index):
    return np.array(rows_source[np.asarray(index, dtype=np.int64)])


class ShardRows:
    """Row lookup across shards by global row index (a few thousand rows at a time)."""

    def __init__(self, refs, sizes):
        self.refs = refs
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def take(self, index) -> np.ndarray:
        ray = require_ray()
        index = np.asarray(index, dtype=np.int64)
        shard_of = np.searchsorted(self.offsets, index, side="right") - 1
        parts = []
        for s in np.unique(shard_of):
            at = np.flatnonzero(shard_of == s)
            parts.append((at, remote(_take).remote(self.refs[s], index[at] - self.offsets[s])))
        blocks = ray.get([ref for _, ref in parts])
        if not blocks:
            return np.zeros((0, MINUTES_PER_DAY), dtype=np.float32)
        out = np.empty((len(index), blocks[0].shape[1]), dtype=blocks[0].dtype)
        for (at, _), block in zip(parts, blocks):
            out[at] = block
        return out


def cluster_days_sharded(
    day_shards,
    k=None,
    k_range=range(3, 13),
    random_state=0,
    max_iter=50,
    progress=False,
    n_init=2,
    silhouette_sample=2000,
) -> tuple[ClusteringResult, ShardedKShape]:
    """`cluster_days` on daily patterns held in shards (Ray references or arrays [n_s, 1440]).

    Returns the same ClusteringResult (labels in shard order) and the fitted ShardedKShape."""
    ray = require_ray()
    refs = [s if isinstance(s, ray.ObjectRef) else ray.put(np.asarray(s)) for s in day_shards]
    if not refs:
        raise ValueError("no day shards to cluster")
    flags = ray.get([remote(_flat_rows).remote(r) for r in refs])
    for _, shape in flags:
        if len(shape) != 2 or shape[1] != MINUTES_PER_DAY:
            raise ValueError(f"daily patterns must have {MINUTES_PER_DAY} minutes per row, got shape {shape}")
    flat = np.concatenate([f for f, _ in flags])
    n_days = len(flat)
    live_idx = np.flatnonzero(~flat)
    n_live = len(live_idx)
    if k is not None and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n_live == 0:
        raise ValueError(f"all {n_days} days are idle/constant: there is no shape to cluster")
    dtype = "float32" if n_live * MINUTES_PER_DAY > FLOAT64_MAX_VALUES else "float64"
    live_refs = [remote(_live_normalised).remote(r, f, dtype) for r, (f, _) in zip(refs, flags)]
    live_rows = ShardRows(live_refs, [int((~f).sum()) for f, _ in flags])
    raw_rows = ShardRows(refs, [len(f) for f, _ in flags])

    silhouette: dict[int, float] = {}
    if k is None:
        # choose_k's own seeded subsample, drawn here so only the sampled days travel
        sample = np.arange(n_live)
        if n_live > silhouette_sample:
            sample = np.sort(np.random.RandomState(random_state).choice(n_live, silhouette_sample, replace=False))
        k, silhouette = choose_k(live_rows.take(sample), k_range, sample=silhouette_sample, random_state=random_state,
                                 progress=progress, max_iter=max_iter)
    elif k > n_live:
        raise ValueError(f"k={k} clusters need at least {k} non-flat days, got {n_live}")

    model = ShardedKShape(int(k), max_iter=max_iter, random_state=random_state, n_init=n_init)
    fit_with_progress(model, live_refs, f"K-Shape k={k} on {n_live} days in {len(refs)} shards (Ray)", progress)

    labels = np.full(n_days, -1, dtype=np.int64)
    labels[live_idx] = model.labels_
    if not silhouette:
        silhouette = fitted_silhouette(int(k), labels, live_idx, raw_rows.take, silhouette_sample, random_state)
    centroids = model.cluster_centers_[:, :, 0].astype(np.float32)
    descriptions = []
    for j in range(int(k)):
        members = np.flatnonzero(labels == j)
        if len(members) > _DESCRIBE_MEMBERS:  # describe_centroid's own evenly spread subset
            members = members[np.linspace(0, len(members) - 1, _DESCRIBE_MEMBERS).round().astype(int)]
        descriptions.append(describe_centroid(centroids[j], raw_rows.take(members)))
    result = clustering_result(model, labels, centroids, descriptions, silhouette)
    return result, model


def member_sample(rows: ShardRows, labels: np.ndarray, per_cluster: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Up to `per_cluster` evenly spread members of each cluster: (their row indices, the rows),
    for plots that cannot hold every day."""
    picked = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        if len(members) > per_cluster:
            members = members[np.linspace(0, len(members) - 1, per_cluster).round().astype(int)]
        picked.append(members)
    index = np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
    return index, rows.take(index)
