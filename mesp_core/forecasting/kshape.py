"""K-Shape (Paparrizos & Gravano, SIGMOD 2015): a drop-in for tslearn's `KShape` estimator.

`KShape` reproduces tslearn's algorithm step for step (random label-free init from `random_state`,
SBD assignment, shape extraction via the top eigenvector of Q^T S Q, sign choice, z-normalised
centroids, the inertia stopping rule with roll-back, empty-cluster retries), but computes it in
batches on the SBD engine (`mesp_core.forecasting.sbd`): per-cluster scatter matrices updated only
for members whose cluster or lag changed, and the eigenvector by warm-started subspace iteration.
Assignment skips (series, centroid) pairs that provably cannot win: a phase-free spectral bound
and the centroid drift since the last iteration bound their correlation from above, so labels
equal the full computation.

Clustering *daily patterns* (idle days set aside, K by silhouette, clusters described in words)
is `mesp_core.forecasting.patterns`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mesp_core.forecasting.sbd import (
    FLOAT64_MAX_VALUES,
    _SBD,
    _as_series_matrix,
    parallel,
    serial,
    sbd_to_centroids,
    znormalize,
)

# Pairs whose distance lower bound exceeds the best exact distance by less than this are still
# computed exactly, so rounding in the bounds can never change a label.
_PRUNE_MARGIN = {torch.float32: 1e-4, torch.float64: 1e-9}
# Exact eigendecomposition up to this matrix size; above it, warm-started subspace iteration
# (eigh is O(N^3): 0.1 s at N=375 and 3 s at N=1440 on one core, against a few ms here).
_EXACT_EIGH_MAX = 128
_EXACT_GRAM_EIGH_MAX = 512  # member-side Gram matrices: eigh of 512x512 takes ~20 ms


class EmptyClusterError(ValueError):
    """Every K-Shape attempt ended with a cluster that no series was closest to."""


class NotFittedError(RuntimeError):
    """predict() or a fitted attribute was used before fit()."""


def _check_random_state(seed) -> np.random.RandomState:
    """Same contract as sklearn's check_random_state, so seeds draw the same initial centroids."""
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {seed!r}")



# --------------------------------------------------------------------------- shape extraction


def _top_eigvec_iterative(M: torch.Tensor, warm: torch.Tensor | None, tol: float, max_passes: int = 150):
    """Top eigenvector of a symmetric PSD matrix by block subspace iteration with Rayleigh-Ritz.

    Converges in a few passes when the top eigenvalue stands out (any cluster with a shape).
    When it does not (a cluster of pure noise, whose top eigenvalues nearly coincide) the
    eigenvector is ill-defined for any solver, tslearn's eigh included; after `max_passes` the
    best Ritz vector (Rayleigh quotient within rounding of the top eigenvalue) is returned."""
    N = M.shape[0]
    block = min(8, N)
    gen = torch.Generator().manual_seed(0)  # deterministic fill for the extra block vectors
    V = torch.randn((N, block), generator=gen, dtype=M.dtype)
    if warm is not None and float(torch.linalg.vector_norm(warm)) > 0:
        V[:, 0] = warm
    V, _ = torch.linalg.qr(V)
    for _ in range(max_passes):
        W = M @ V
        H = V.T @ W
        theta, U = torch.linalg.eigh((H + H.T) / 2)
        U = U.flip(1)
        V, W, top = V @ U, W @ U, theta[-1]
        residual = torch.linalg.vector_norm(W[:, 0] - top * V[:, 0])
        if top <= 0 or residual <= tol * top:
            return V[:, 0]
        V, _ = torch.linalg.qr(W)
    return V[:, 0]


def _centred(aligned: torch.Tensor) -> torch.Tensor:
    return aligned - aligned.mean(dim=1, keepdim=True)


def _shape_direction(aligned: torch.Tensor | None, scatter: torch.Tensor | None, reference: np.ndarray,
                     m: int, T: int, dtype: torch.dtype) -> torch.Tensor:
    """Top eigenvector (float64, unit norm, sign not yet chosen) of Q^T S Q for one cluster.

    With fewer members than time steps (m < T) it comes from the members' small Gram matrix
    (`aligned` needed); otherwise from `scatter` = Yc^T Yc alone, which is a plain sum over
    members, so shards of the data can each contribute a part (mesp_core.distributed)."""
    # the matrices carry the data's rounding: solving far below it buys nothing; float32 fits
    # cap the passes (clusters with a shape converge well within them, see _top_eigvec_iterative)
    tol, passes = (1e-11, 150) if dtype == torch.float64 else (1e-6, 30)
    ref = torch.from_numpy(np.asarray(reference, dtype=np.float64))
    if m < T:
        centred = _centred(aligned)
        with parallel(m * m * T // 64):
            gram = (centred @ centred.T).double()
        if m <= _EXACT_GRAM_EIGH_MAX:
            u = torch.linalg.eigh(gram)[1][:, -1]
        else:
            u = _top_eigvec_iterative(gram, (centred @ ref.to(dtype)).double(), tol, passes)
        mu = (centred.T @ u.to(dtype)).double()
        return mu / torch.linalg.vector_norm(mu)
    if T <= _EXACT_EIGH_MAX:
        return torch.linalg.eigh(scatter)[1][:, -1]
    return _top_eigvec_iterative(scatter, ref - ref.mean(), tol, passes)


def _sign_sums(aligned: torch.Tensor, mu: torch.Tensor) -> tuple[float, float]:
    """Summed distances of the members to +mu and to -mu (a sum over members, so it shards)."""
    m, T = aligned.shape
    with parallel(m * T):
        proj = (aligned @ mu.to(aligned.dtype)).double()
        sq = (aligned * aligned).sum(dim=1).double()
    plus = torch.sqrt(torch.clamp(sq - 2 * proj + 1, min=0)).sum()
    minus = torch.sqrt(torch.clamp(sq + 2 * proj + 1, min=0)).sum()
    return float(plus), float(minus)


def _extract_shape(aligned: torch.Tensor, scatter: torch.Tensor, reference: np.ndarray) -> np.ndarray:
    """tslearn's shape extraction: top eigenvector of Q^T (Xp^T Xp) Q, sign closer to the members.

    `scatter` is Q^T S Q = Yc^T Yc (Yc: the row-centred aligned members), float64 [T, T]. With
    fewer members than time steps the small Gram matrix Yc Yc^T (same top eigenvalue) is used."""
    m, T = aligned.shape
    mu = _shape_direction(aligned, scatter, reference, m, T, aligned.dtype)
    # Both mu and -mu are eigenvectors: keep the one with the smaller summed distance to members.
    plus, minus = _sign_sums(aligned, mu)
    if minus < plus:
        mu = -mu
    return mu.numpy()


class _Scatter:
    """Per-cluster Yc^T Yc, kept up to date by adding and removing only the members whose
    cluster or lag changed since the last iteration (late iterations change a few percent)."""

    def __init__(self, K: int, T: int):
        self.S = torch.zeros((K, T, T), dtype=torch.float64)
        self.labels: np.ndarray | None = None
        self.lags: torch.Tensor | None = None

    def _accumulate(self, sbd: _SBD, rows: torch.Tensor, labels: np.ndarray, lags: torch.Tensor, sign: float):
        for k in np.unique(labels):
            sel = torch.from_numpy(np.flatnonzero(labels == k))
            for s in range(0, len(sel), 4096):
                part = sel[s : s + 4096]
                Y = _centred(sbd.aligned(rows[part], lags[part]))
                with parallel(len(part) * sbd.T * sbd.T // 64):
                    self.S[k] += sign * (Y.T @ Y).double()

    def reset(self):
        self.labels = self.lags = None  # rebuilt from scratch when next needed

    def update(self, sbd: _SBD, labels: np.ndarray, lags: torch.Tensor):
        rows = torch.arange(sbd.n)
        if self.labels is None:
            changed = np.ones(sbd.n, dtype=bool)
        else:
            changed = (labels != self.labels) | (lags != self.lags).numpy()
        if changed.mean() > 0.5:  # cheaper (and rounding-free) to rebuild
            self.S.zero_()
            self._accumulate(sbd, rows, labels, lags, 1.0)
        elif changed.any():
            idx = np.flatnonzero(changed)
            t_idx = torch.from_numpy(idx)
            self._accumulate(sbd, rows[t_idx], self.labels[idx], self.lags[t_idx], -1.0)
            self._accumulate(sbd, rows[t_idx], labels[idx], lags[t_idx], 1.0)
        self.labels, self.lags = labels.copy(), lags.clone()


# --------------------------------------------------------------------------- K-Shape


@dataclass
class _Assignment:
    labels: np.ndarray  # [n]
    lags: torch.Tensor  # [n] lag of each series against its own centroid
    inertia: float
    bounds: torch.Tensor  # [n, K] exact distances or valid lower bounds
    sq_sum: float = 0.0  # sum of squared distances to the own centroid (inertia * n)


def _nearest_centroids(sbd: _SBD, centroids: np.ndarray, previous: _Assignment | None, drift: np.ndarray | None):
    """Nearest centroid by SBD for every series, computing only pairs that could win.

    Each series' label depends on it and the centroids alone, so shards of the series can be
    assigned apart (mesp_core.distributed). Returns the assignment and the pairs computed."""
    K = len(centroids)
    Cfc, cnorms, Cmag = sbd.centroid_terms(centroids)
    bounds = sbd.lower_bounds(Cmag, cnorms)
    if previous is not None and drift is not None:
        # SBD can drop by at most the (unit-norm) centroid displacement since last time.
        bounds = torch.maximum(bounds, previous.bounds - torch.from_numpy(drift).to(sbd.dtype)[None])
    rows = torch.arange(sbd.n)
    own = torch.from_numpy(previous.labels) if previous is not None else bounds.argmin(dim=1)
    own_dist, own_lag = sbd.pairs(rows, own, Cfc, cnorms)
    exact = torch.full((sbd.n, K), math.inf, dtype=sbd.dtype)
    lags = torch.zeros((sbd.n, K), dtype=torch.long)
    exact[rows, own] = own_dist
    lags[rows, own] = own_lag
    candidates = bounds <= own_dist[:, None] + _PRUNE_MARGIN[sbd.dtype]
    candidates[rows, own] = False
    cand_rows, cand_cols = torch.nonzero(candidates, as_tuple=True)
    if len(cand_rows):
        d, lg = sbd.pairs(cand_rows, cand_cols, Cfc, cnorms)
        exact[cand_rows, cand_cols] = d
        lags[cand_rows, cand_cols] = lg
    labels = exact.argmin(dim=1)  # first index among ties, like numpy's argmin in tslearn
    best = exact[rows, labels]
    known = torch.isfinite(exact)
    bounds = torch.where(known, exact, bounds)
    sq_sum = float((best.double() ** 2).sum())
    assignment = _Assignment(labels.numpy(), lags[rows, labels], sq_sum / sbd.n, bounds, sq_sum)
    return assignment, sbd.n + len(cand_rows)


class KShape:
    """K-Shape clustering (Paparrizos & Gravano 2015), equal to tslearn.clustering.KShape.

    fit() z-normalises the series first (tslearn's predict does; its fit expects already
    z-normalised data, so both agree on such data). `dtype` None picks float64 for small inputs
    (up to 4M values) and float32 beyond, where the FFTs and Gram products dominate."""

    def __init__(
        self,
        n_clusters,
        max_iter=100,
        tol=1e-6,
        random_state=None,
        n_init=1,
        init="random",
        verbose=False,
        dtype=None,
    ):
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_init = n_init
        self.init = init
        self.verbose = verbose
        self.dtype = dtype
        # Optional hook called as callback(iteration, inertia) after each iteration (progress bars).
        self.iteration_callback: Callable[[int, float], None] | None = None

    # -- validation
    def _check_params(self, n: int, T: int) -> np.ndarray | None:
        if not isinstance(self.n_clusters, (int, np.integer)) or isinstance(self.n_clusters, bool) or self.n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1, got {self.n_init!r}")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if n < self.n_clusters:
            raise ValueError(f"cannot form {self.n_clusters} clusters from {n} series")
        if isinstance(self.init, str):
            if self.init != "random":
                raise ValueError(f"init must be 'random' or an array of initial centroids, got {self.init!r}")
            return None
        init = _as_series_matrix(self.init, "init")
        if init.shape != (self.n_clusters, T):
            raise ValueError(f"init must have shape ({self.n_clusters}, {T}[, 1]), got {np.shape(self.init)}")
        return init.astype(np.float64)

    def _torch_dtype(self, n: int, T: int) -> torch.dtype:
        if self.dtype is None:
            return torch.float64 if n * T <= FLOAT64_MAX_VALUES else torch.float32
        if self.dtype in (np.float32, torch.float32, "float32"):
            return torch.float32
        if self.dtype in (np.float64, torch.float64, "float64"):
            return torch.float64
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")

    # -- the algorithm
    def _assign(self, sbd: _SBD, centroids: np.ndarray, previous: _Assignment | None, drift: np.ndarray | None):
        assignment, pairs = _nearest_centroids(sbd, centroids, previous, drift)
        if np.bincount(assignment.labels, minlength=len(centroids)).min() == 0:
            raise EmptyClusterError
        self._pairs_computed += pairs
        return assignment

    def _update(self, sbd: _SBD, centroids: np.ndarray, assignment: _Assignment, scatter: _Scatter) -> np.ndarray:
        sizes = np.bincount(assignment.labels, minlength=len(centroids))
        if sizes.max() >= sbd.T:  # only large clusters read the scatter matrices
            scatter.update(sbd, assignment.labels, assignment.lags)
        else:
            scatter.reset()
        new = np.empty_like(centroids)
        for k in range(len(centroids)):
            members = torch.from_numpy(np.flatnonzero(assignment.labels == k))
            aligned = sbd.aligned(members, assignment.lags[members])
            new[k] = _extract_shape(aligned, scatter.S[k], centroids[k])
        return znormalize(new).astype(np.float64)

    def _fit_one_init(self, sbd: _SBD, X: np.ndarray, init: np.ndarray | None, rs: np.random.RandomState):
        if init is not None:
            centroids = init.copy()
        else:
            centroids = X[rs.choice(X.shape[0], self.n_clusters, replace=False)].astype(np.float64)
        scatter = _Scatter(len(centroids), sbd.T)
        clock = time.perf_counter()
        assignment = self._assign(sbd, centroids, None, None)
        self._seconds["assign"] += time.perf_counter() - clock
        old_inertia = math.inf
        it = 0
        for it in range(self.max_iter):
            old_centroids, old_assignment = centroids, assignment
            clock = time.perf_counter()
            centroids = self._update(sbd, centroids, assignment, scatter)
            drift = _unit_drift(old_centroids, centroids)
            self._seconds["update"] += time.perf_counter() - clock
            clock = time.perf_counter()
            assignment = self._assign(sbd, centroids, assignment, drift)
            self._seconds["assign"] += time.perf_counter() - clock
            if self.verbose:
                print("%.3f" % assignment.inertia, end=" --> ")
            if self.iteration_callback is not None:
                self.iteration_callback(it, assignment.inertia)
            if abs(old_inertia - assignment.inertia) < self.tol or old_inertia - assignment.inertia < 0:
                # tslearn rolls back to the previous centroids and their assignment
                centroids, assignment = old_centroids, old_assignment
                break
            old_inertia = assignment.inertia
        if self.verbose:
            print("")
        return centroids, assignment, it + 1

    def fit(self, X, y=None):
        """Compute the clustering; X is [n, T] or [n, T, 1]."""
        X = znormalize(_as_series_matrix(X))
        n, T = X.shape
        init = self._check_params(n, T)
        dtype = self._torch_dtype(n, T)
        if self.n_clusters * T * T * 8 > 4 << 30:
            raise ValueError(
                f"series of length {T} need {self.n_clusters} scatter matrices of {T}x{T}: over 4 GiB; "
                "resample the series or use fewer clusters"
            )
        with serial():
            return self._fit(X, init, dtype)

    def _fit(self, X: np.ndarray, init: np.ndarray | None, dtype: torch.dtype):
        n, T = X.shape
        sbd = _SBD(X, dtype)
        rs = _check_random_state(self.random_state)
        max_attempts = 1 if init is not None else max(self.n_init, 10)
        best = None
        successes = attempts = 0
        self._pairs_computed = 0
        self._seconds = {"assign": 0.0, "update": 0.0}
        while successes < self.n_init and attempts < max_attempts:
            attempts += 1
            try:
                if self.verbose and self.n_init > 1:
                    print("Init %d" % (successes + 1))
                centroids, assignment, n_iter = self._fit_one_init(sbd, X, init, rs)
            except EmptyClusterError:
                if self.verbose:
                    print("Resumed because of empty cluster")
                continue
            if best is None or assignment.inertia < best[1].inertia:
                best = (centroids, assignment, n_iter)
            successes += 1
        if best is None:
            raise EmptyClusterError(
                f"K-Shape left a cluster empty in all {attempts} attempts: "
                f"{self.n_clusters} clusters are too many for these {n} series"
            )
        centroids, assignment, n_iter = best
        self.cluster_centers_ = centroids.reshape(self.n_clusters, T, 1)
        self.labels_ = assignment.labels.astype(np.int64)
        self.inertia_ = assignment.inertia
        self.n_iter_ = n_iter
        self.pairs_computed_ = self._pairs_computed  # SBD pairs evaluated exactly (for benchmarks)
        self.seconds_ = {name: round(value, 2) for name, value in self._seconds.items()}  # all attempts
        return self

    def fit_predict(self, X, y=None):
        return self.fit(X).labels_

    def predict(self, X) -> np.ndarray:
        """Index of the nearest centroid (SBD) for each series."""
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this KShape is not fitted yet: call fit() first")
        X = _as_series_matrix(X)
        if X.shape[1] != self.cluster_centers_.shape[1]:
            raise ValueError(f"series have length {X.shape[1]}, the model was fitted on length {self.cluster_centers_.shape[1]}")
        return sbd_to_centroids(X, self.cluster_centers_[:, :, 0], dtype=self.dtype).argmin(axis=1)


def _unit_drift(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """|c_new/|c_new| - c_old/|c_old||: the most any series' normalised correlation can change."""
    def unit(c):
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        return np.divide(c, norm, out=np.zeros_like(c), where=norm > 0)

    return np.linalg.norm(unit(new) - unit(old), axis=1) + 1e-12


