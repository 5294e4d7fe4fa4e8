"""K-Shape over shards of the series, exactly: the same fit as `KShape` on their concatenation.

Every K-Shape step is a sum or a per-series choice, so it splits over shards (Ray tasks):
- assignment: each series' nearest centroid depends on it and the centroids alone; a shard task
  assigns its rows (with the same bound pruning, from its own previous assignment) and returns
  the cluster sizes and its sum of squared distances (inertia = total / n);
- shape extraction: the top eigenvector of S_k = sum over members of y y^T (y: the member
  aligned to its centroid, centred) is a sum over shards. A cluster with fewer members than time
  steps is solved from its members' small Gram matrix in one process (as `KShape` does), so its
  shards return their aligned members (under T rows of T values); a larger cluster's shards
  return their part of S_k and the driver adds them. The sign of the eigenvector needs two more
  sums over members (distances to +mu and -mu), one more round.

A shard's assignment state (labels, lags, distance bounds) stays in Ray's object store between
iterations and goes from one task to the next as a reference; the driver only holds centroids,
cluster sizes and the final labels. Tasks are pure functions of their arguments, so a task whose
worker dies is rerun (Ray's lineage) with the same result.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from mesp_core.distributed.engine import private_mb, remote, require_ray
from mesp_core.forecasting.kshape import (
    EmptyClusterError,
    KShape,
    _Assignment,
    _centred,
    _check_random_state,
    _nearest_centroids,
    _shape_direction,
    _sign_sums,
    _unit_drift,
)
from mesp_core.forecasting.sbd import _SBD, _as_series_matrix, serial, znormalize

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_GRAM_CHUNK = 4096  # rows per Gram product, as KShape's scatter update


def _engine(X: np.ndarray, dtype: str, spectra: bool = True) -> _SBD:
    with warnings.catch_warnings():
        # object-store arrays are read-only; the engine never writes to its series
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return _SBD(X, _DTYPES[dtype], max_cached_bytes=(3 << 30) if spectra else 0)


def _previous(state) -> _Assignment | None:
    if state is None:
        return None
    labels, lags, bounds = state
    return _Assignment(np.array(labels), torch.from_numpy(np.array(lags)), 0.0, torch.from_numpy(np.array(bounds)))


# --------------------------------------------------------------------------- shard tasks


def _prepare_shard(X):
    """z-normalised rows of one shard (KShape.fit's first step), and their count and length."""
    Z = znormalize(_as_series_matrix(X))
    return Z, Z.shape


def _shard_rows(Z, rows):
    return np.asarray(Z[np.asarray(rows, dtype=np.int64)], dtype=np.float64)


def _assign_shard(Z, centroids, state, drift, dtype: str, K: int):
    """Nearest centroids of one shard's rows: (sizes, squared-distance sum, pairs, peak RSS), state."""
    with serial():
        sbd = _engine(Z, dtype)
        drift = None if drift is None else np.array(drift)  # writable copies for torch.from_numpy
        assignment, pairs = _nearest_centroids(sbd, np.array(centroids), _previous(state), drift)
    sizes = np.bincount(assignment.labels, minlength=K)
    summary = {"sizes": sizes, "sq_sum": assignment.sq_sum, "pairs": pairs, "memory_mb": private_mb()}
    return summary, (assignment.labels, assignment.lags.numpy(), assignment.bounds.numpy())


def _shape_terms(Z, state, small, large, dtype: str):
    """Per cluster: aligned members (clusters in `small`) or their part of S = sum y y^T (`large`)."""
    labels, lags, _ = state
    lags = torch.from_numpy(np.array(lags))
    aligned: dict[int, np.ndarray] = {}
    scatter: dict[int, np.ndarray] = {}
    with serial():
        sbd = _engine(Z, dtype, spectra=False)
        for k in small:
            members = torch.from_numpy(np.flatnonzero(labels == k))
            aligned[k] = sbd.aligned(members, lags[members]).numpy()
        for k in large:
            members = torch.from_numpy(np.flatnonzero(labels == k))
            S = torch.zeros((sbd.T, sbd.T), dtype=torch.float64)
            for s in range(0, len(members), _GRAM_CHUNK):
                part = members[s : s + _GRAM_CHUNK]
                Y = _centred(sbd.aligned(part, lags[part]))
                S += (Y.T @ Y).double()
            scatter[k] = S.numpy()
    return aligned, scatter, private_mb()


def _sign_terms(Z, state, directions, dtype: str):
    """Per cluster in `directions`: summed distances of this shard's members to +mu and -mu."""
    labels, lags, _ = state
    lags = torch.from_numpy(np.array(lags))
    sums = {}
    with serial():
        sbd = _engine(Z, dtype, spectra=False)
        for k, mu in directions.items():
            members = torch.from_numpy(np.flatnonzero(labels == k))
            if len(members) == 0:
                sums[k] = (0.0, 0.0)
                continue
            aligned = sbd.aligned(members, lags[members])
            sums[k] = _sign_sums(aligned, torch.from_numpy(np.array(mu)))
    return sums


def _shard_labels(state):
    return np.asarray(state[0], dtype=np.int64)


# --------------------------------------------------------------------------- the driver


class ShardedKShape(KShape):
    """`KShape` whose fit runs on shards of the series as Ray tasks (same parameters, same result).

    fit() takes a list of shards: arrays [n_s, T] or Ray ObjectRefs to them. The result (labels
    in shard order, centroids, inertia, n_iter) equals `KShape(...).fit(np.concatenate(shards))`:
    labels identical, centroids within floating-point rounding (sums added in another order).
    `worker_memory_mb_`: the largest private memory of a shard task's worker (sampled as each task
    ends); `driver_memory_mb_`: the same for this process, sampled after every step."""

    def fit(self, shards, y=None):
        ray = require_ray()
        if len(shards) == 0:
            raise ValueError("no shards to cluster")
        refs = [s if isinstance(s, ray.ObjectRef) else ray.put(np.asarray(s)) for s in shards]
        prepared = [remote(_prepare_shard, num_returns=2).remote(r) for r in refs]
        self._Z = [z for z, _ in prepared]
        shapes = ray.get([shape for _, shape in prepared])
        lengths = {T for _, T in shapes}
        if len(lengths) != 1:
            raise ValueError(f"shards hold series of different lengths: {sorted(lengths)}")
        T = lengths.pop()
        self._sizes = np.array([n for n, _ in shapes], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)])
        n = int(self._offsets[-1])
        init = self._check_params(n, T)
        dtype = self._torch_dtype(n, T)
        self._dtype_name = "float32" if dtype == torch.float32 else "float64"
        self._T, self._n = T, n
        self.worker_memory_mb_ = self.driver_memory_mb_ = 0.0
        rs = _check_random_state(self.random_state)
        max_attempts = 1 if init is not None else max(self.n_init, 10)
        best = None
        successes = attempts = 0
        self._pairs_computed = 0
        while successes < self.n_init and attempts < max_attempts:
            attempts += 1
            try:
                centroids, states, inertia, n_iter = self._fit_one_init_sharded(init, rs)
            except EmptyClusterError:
                continue
            if best is None or inertia < best[2]:
                best = (centroids, states, inertia, n_iter)
            successes += 1
        if best is None:
            raise EmptyClusterError(
                f"K-Shape left a cluster empty in all {attempts} attempts: "
                f"{self.n_clusters} clusters are too many for these {n} series"
            )
        centroids, states, inertia, n_iter = best
        self.cluster_centers_ = centroids.reshape(self.n_clusters, T, 1)
        self.labels_ = np.concatenate(ray.get([remote(_shard_labels).remote(s) for s in states]))
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        self.pairs_computed_ = self._pairs_computed
        self.n_shards_ = len(refs)
        return self

    # -- one initialisation, as KShape._fit_one_init
    def _rows(self, index: np.ndarray) -> np.ndarray:
        ray = require_ray()
        shard_of = np.searchsorted(self._offsets, index, side="right") - 1
        out = np.empty((len(index), self._T), dtype=np.float64)
        parts = {}
        for s in np.unique(shard_of):
            at = np.flatnonzero(shard_of == s)
            parts[int(s)] = (at, remote(_shard_rows).remote(self._Z[s], index[at] - self._offsets[s]))
        for s, (at, ref) in parts.items():
            out[at] = ray.get(ref)
        return out

    def _assign_all(self, centroids, states, drift):
        ray = require_ray()
        task = remote(_assign_shard, num_returns=2)
        calls = [
            task.remote(Z, centroids, None if states is None else states[i], drift, self._dtype_name, self.n_clusters)
            for i, Z in enumerate(self._Z)
        ]
        summaries = ray.get([summary for summary, _ in calls])
        sizes = np.sum([s["sizes"] for s in summaries], axis=0)
        self._pairs_computed += sum(s["pairs"] for s in summaries)
        self.worker_memory_mb_ = max([self.worker_memory_mb_] + [s["memory_mb"] for s in summaries])
        self.driver_memory_mb_ = max(self.driver_memory_mb_, private_mb())
        if sizes.min() == 0:
            raise EmptyClusterError
        inertia = float(sum(s["sq_sum"] for s in summaries) / self._n)
        return [state for _, state in calls], sizes, inertia

    def _update_all(self, centroids: np.ndarray, states, sizes: np.ndarray) -> np.ndarray:
        ray = require_ray()
        T, dtype = self._T, _DTYPES[self._dtype_name]
        small = [k for k in range(len(centroids)) if sizes[k] < T]
        large = [k for k in range(len(centroids)) if sizes[k] >= T]
        refs = [remote(_shape_terms).remote(Z, st, small, large, self._dtype_name) for Z, st in zip(self._Z, states)]
        aligned_parts: dict[int, list[np.ndarray]] = {k: [] for k in small}
        scatter: dict[int, np.ndarray] = {}
        for ref in refs:  # one shard's part at a time: the driver holds the totals and one part
            aligned, partial, memory = ray.get(ref)
            self.worker_memory_mb_ = max(self.worker_memory_mb_, memory)
            for k in small:
                aligned_parts[k].append(aligned[k])
            for k in large:
                if k in scatter:
                    scatter[k] += partial[k]
                else:
                    scatter[k] = np.array(partial[k])  # a writable copy of the object-store array
            del aligned, partial
        new = np.empty_like(centroids)
        directions: dict[int, np.ndarray] = {}
        with serial():
            for k in small:
                aligned = torch.from_numpy(np.concatenate(aligned_parts.pop(k)))
                mu = _shape_direction(aligned, None, centroids[k], int(sizes[k]), T, dtype)
                plus, minus = _sign_sums(aligned, mu)
                new[k] = (-mu if minus < plus else mu).numpy()
            for k in large:
                S = torch.from_numpy(scatter.pop(k))
                directions[k] = _shape_direction(None, S, centroids[k], int(sizes[k]), T, dtype).numpy()
        self.driver_memory_mb_ = max(self.driver_memory_mb_, private_mb())
        if directions:
            sums = ray.get([remote(_sign_terms).remote(Z, st, directions, self._dtype_name) for Z, st in zip(self._Z, states)])
            for k, mu in directions.items():
                plus = sum(s[k][0] for s in sums)
                minus = sum(s[k][1] for s in sums)
                new[k] = -mu if minus < plus else mu
        return znormalize(new).astype(np.float64)

    def _fit_one_init_sharded(self, init: np.ndarray | None, rs: np.random.RandomState):
        if init is not None:
            centroids = init.copy()
        else:
            centroids = self._rows(rs.choice(self._n, self.n_clusters, replace=False))
        states, sizes, inertia = self._assign_all(centroids, None, None)
        old_inertia = math.inf
        it = 0
        for it in range(self.max_iter):
            old = (centroids, states, sizes, inertia)
            centroids = self._update_all(centroids, states, sizes)
            drift = _unit_drift(old[0], centroids)
            states, sizes, inertia = self._assign_all(centroids, states, drift)
            if self.iteration_callback is not None:
                self.iteration_callback(it, inertia)
            if abs(old_inertia - inertia) < self.tol or old_inertia - inertia < 0:
                centroids, states, sizes, inertia = old  # tslearn's roll-back
                break
            old_inertia = inertia
        return centroids, states, inertia, it + 1
