"""Experiment 1: K-Shape clustering of daily 1440-minute invocation patterns.

`KShape` reproduces tslearn's algorithm step for step (random label-free init from `random_state`,
SBD assignment, shape extraction via the top eigenvector of Q^T S Q, sign choice, z-normalised
centroids, the inertia stopping rule with roll-back, empty-cluster retries), but computes it in
batches: one zero-padded rFFT per series (kept), cross-correlations for many (series, centroid)
pairs per inverse FFT call, members shift-aligned in one gather, per-cluster scatter matrices
updated only for members whose cluster or lag changed, and the eigenvector by warm-started
subspace iteration. Assignment skips (series, centroid) pairs that provably cannot win: a
phase-free spectral bound and the centroid drift since the last iteration bound their
correlation from above, so labels equal the full computation.

`cluster_days` is the entry point for daily patterns: it sets idle/constant days aside (label -1),
picks K by silhouette when not given, fits K-Shape and describes each cluster in words.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from mesp_core.constants import MINUTES_PER_DAY

# tslearn's normalized_cc treats norm products below this as "no correlation" (distance 1).
_TINY_DENOM = 1e-9
# Above this many values (n * T) the fit runs in float32; below, float64 like tslearn.
_FLOAT64_MAX_VALUES = 1 << 22
# Pairs whose distance lower bound exceeds the best exact distance by less than this are still
# computed exactly, so rounding in the bounds can never change a label.
_PRUNE_MARGIN = {torch.float32: 1e-4, torch.float64: 1e-9}
# Exact eigendecomposition up to this matrix size; above it, warm-started subspace iteration
# (eigh is O(N^3): 0.1 s at N=375 and 3 s at N=1440 on one core, against a few ms here).
_EXACT_EIGH_MAX = 128
_EXACT_GRAM_EIGH_MAX = 512  # member-side Gram matrices: eigh of 512x512 takes ~20 ms
# Work is split in two: small torch ops (per-cluster vectors, 8-column blocks, tiny eigh) run on
# one thread, where thread-pool hand-offs would cost more than they save (badly so on shared
# cores); only big batched ops (inverse-FFT batches, Gram and bound matrix products) use the
# caller's torch thread count.
_PARALLEL_MIN_VALUES = 1 << 20
_pool_threads = [0]  # caller's thread count while a _serial() block is active, else 0


@contextlib.contextmanager
def _serial():
    previous = torch.get_num_threads()
    outer = _pool_threads[0]
    if not outer:
        _pool_threads[0] = previous
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _pool_threads[0] = outer
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _parallel(n_values: int):
    """Inside _serial(): give a big op (n_values elements) the caller's threads back."""
    threads = _pool_threads[0]
    if not threads or threads == 1 or n_values < _PARALLEL_MIN_VALUES:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(1)


class EmptyClusterError(ValueError):
    """Every K-Shape attempt ended with a cluster that no series was closest to."""


class NotFittedError(RuntimeError):
    """predict() or a fitted attribute was used before fit()."""


# --------------------------------------------------------------------------- input checks


def _as_series_matrix(X, name: str = "X") -> np.ndarray:
    """Return X as a float [n, T] array; accepts [n, T] or tslearn's [n, T, 1]."""
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a 2-D numeric array [n_series, length]: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 3:
        if arr.shape[2] != 1:
            raise ValueError(f"{name} has {arr.shape[2]} features per time step; only univariate series are supported")
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_series, length] (or [n, length, 1]), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no series")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} series must have at least 2 time steps, got {arr.shape[1]}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def is_flat(X, tol: float = 1e-8) -> np.ndarray:
    """Rows whose standard deviation is (near) zero: idle or constant days, which have no shape."""
    arr = _as_series_matrix(X)
    std = arr.std(axis=1, dtype=np.float64)
    scale = np.maximum(1.0, np.abs(arr).max(axis=1).astype(np.float64))
    return std <= tol * scale


def znormalize(X, tol: float = 1e-8) -> np.ndarray:
    """Z-normalise each row (mean 0, population std 1); flat rows become all zeros.

    float32 input stays float32 (statistics are computed in float64), anything else is float64."""
    arr = _as_series_matrix(X)
    out_dtype = np.float32 if arr.dtype == np.float32 else np.float64
    mean = arr.mean(axis=1, dtype=np.float64, keepdims=True)
    std = arr.std(axis=1, dtype=np.float64, keepdims=True)
    flat = is_flat(arr, tol)
    std[flat] = 1.0
    out = ((arr - mean) / std).astype(out_dtype, copy=False)
    out[flat] = 0.0
    return out


def _check_random_state(seed) -> np.random.RandomState:
    """Same contract as sklearn's check_random_state, so seeds draw the same initial centroids."""
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {seed!r}")


def _fft_length(T: int) -> int:
    """Smallest even 2^a 3^b 5^c >= 2T-1: room for every linear lag, and a fast FFT size."""
    target = 2 * T - 1
    best = None
    p2 = 2
    while p2 < 2 * target:
        p3 = p2
        while p3 < 2 * target:
            p5 = p3
            while p5 < 2 * target:
                if p5 >= target and (best is None or p5 < best):
                    best = p5
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


# --------------------------------------------------------------------------- SBD engine


class _SBD:
    """Normalised cross-correlation of a fixed set of series against changing centroids.

    For a pair (x, c) it returns max over lags j in [-(T-1), T-1] of sum_t x[t+j] c[t] / (|x||c|)
    and the maximising j; aligning x to c means x_aligned[t] = x[t + j] (zero outside)."""

    def __init__(self, X: np.ndarray, dtype: torch.dtype, max_cached_bytes: int = 3 << 30):
        self.dtype = dtype
        self.cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self.X = torch.from_numpy(np.ascontiguousarray(X)).to(dtype)
        self.n, self.T = self.X.shape
        self.L = _fft_length(self.T)
        self.F = self.L // 2 + 1
        self.norms = torch.linalg.vector_norm(self.X, dim=1)
        # |X_f| weighted as in the inverse real FFT: an upper bound on every lag's correlation.
        self.weights = torch.full((self.F,), 2.0, dtype=dtype)
        self.weights[0] = 1.0
        self.weights[-1] = 1.0
        self.weights /= self.L
        itemsize = torch.empty((), dtype=self.cdtype).element_size()
        self.Xf = None
        self.Xmag = None
        self.rows_per_chunk = max(1, (1 << 24) // self.L)  # ~16M reals per inverse-FFT batch
        if self.n * self.F * (itemsize * 3 // 2) <= max_cached_bytes:
            self.Xf = self._rfft_rows(torch.arange(self.n))
            self.Xmag = self.Xf.abs() * self.weights

    def _rfft_rows(self, rows: torch.Tensor) -> torch.Tensor:
        with _parallel(len(rows) * self.L):
            parts = [torch.fft.rfft(self.X[rows[s : s + 8192]], n=self.L, dim=1) for s in range(0, len(rows), 8192)]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def spectra(self, rows: torch.Tensor) -> torch.Tensor:
        return self.Xf[rows] if self.Xf is not None else self._rfft_rows(rows)

    def centroid_terms(self, C: np.ndarray):
        Ct = torch.from_numpy(np.ascontiguousarray(C)).to(self.dtype)
        Cf = torch.fft.rfft(Ct, n=self.L, dim=1)
        return Cf.conj().contiguous(), torch.linalg.vector_norm(Ct, dim=1), Cf.abs()

    def _finish(self, best, arg, denom):
        lag = torch.where(arg < self.T, arg, arg - self.L)
        tiny = denom < _TINY_DENOM
        ncc = torch.where(tiny, torch.zeros_like(best), best / torch.where(tiny, torch.ones_like(denom), denom))
        # tslearn: with no correlation the argmax is the first lag, which aligns x[t + T - 1] to t.
        lag = torch.where(tiny, torch.full_like(lag, self.T - 1), lag)
        return 1.0 - ncc, lag

    def pairs(self, rows: torch.Tensor, cols: torch.Tensor, Cfc: torch.Tensor, cnorms: torch.Tensor):
        """Exact SBD and best lag for the pairs (rows[p], cols[p]), batched per centroid."""
        dist = torch.empty(len(rows), dtype=self.dtype)
        lag = torch.empty(len(rows), dtype=torch.long)
        order = torch.argsort(cols, stable=True)
        counts = torch.bincount(cols, minlength=len(Cfc)).tolist()
        step = self.rows_per_chunk
        start = 0
        for k, count in enumerate(counts):
            for s in range(start, start + count, step):
                sel = order[s : min(s + step, start + count)]
                r = rows[sel]
                with _parallel(len(r) * self.L):
                    cc = torch.fft.irfft(self.spectra(r).mul_(Cfc[k]), n=self.L, dim=1)
                    if self.L - self.T + 1 > self.T:  # indices T..L-T hold no valid lag
                        cc[:, self.T : self.L - self.T + 1] = -math.inf
                    best, arg = cc.max(dim=1)
                dist[sel], lag[sel] = self._finish(best, arg, self.norms[r] * cnorms[k])
            start += count
        return dist, lag

    def all_pairs(self, Cfc: torch.Tensor, cnorms: torch.Tensor):
        """Exact SBD [n, K] and best lags [n, K] against every centroid."""
        K = Cfc.shape[0]
        dist = torch.empty((self.n, K), dtype=self.dtype)
        lag = torch.empty((self.n, K), dtype=torch.long)
        step = max(1, self.rows_per_chunk // K)
        for s in range(0, self.n, step):
            rows = torch.arange(s, min(s + step, self.n))
            with _parallel(len(rows) * K * self.L):
                cc = torch.fft.irfft(self.spectra(rows)[:, None, :] * Cfc[None], n=self.L, dim=2)
                if self.L - self.T + 1 > self.T:
                    cc[:, :, self.T : self.L - self.T + 1] = -math.inf
                best, arg = cc.max(dim=2)
            dist[s : s + step], lag[s : s + step] = self._finish(best, arg, self.norms[rows, None] * cnorms[None])
        return dist, lag

    def lower_bounds(self, Cmag: torch.Tensor, cnorms: torch.Tensor) -> torch.Tensor:
        """Per pair, 1 - sum_f w_f |X_f||C_f| / (|x||c|) <= SBD (triangle inequality on the iFFT)."""
        if self.Xmag is not None:
            with _parallel(self.n * self.F * len(Cmag)):
                ub = self.Xmag @ Cmag.T
        else:
            ub = torch.cat(
                [
                    (self._rfft_rows(torch.arange(s, min(s + 8192, self.n))).abs() * self.weights) @ Cmag.T
                    for s in range(0, self.n, 8192)
                ]
            )
        denom = self.norms[:, None] * cnorms[None]
        tiny = denom < _TINY_DENOM
        lb = 1.0 - ub / torch.where(tiny, torch.ones_like(denom), denom)
        return torch.where(tiny, torch.ones_like(lb), lb)

    def aligned(self, rows: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
        """Members shifted onto their centroid: out[i, t] = X[rows[i], t + lags[i]], zero outside."""
        T = self.T
        out = torch.empty((len(rows), T), dtype=self.dtype)
        step = 4096
        # zero borders written once; each chunk only copies its rows into the middle third
        buffer = torch.zeros((min(step, max(1, len(rows))), 3 * T), dtype=self.dtype)
        for s in range(0, len(rows), step):
            r = rows[s : s + step]
            with _parallel(len(r) * T):
                buffer[: len(r), T : 2 * T].copy_(self.X[r])
                windows = buffer[: len(r)].unfold(1, T, 1)  # [m, 2T+1, T] view: window o starts at o - T
                out[s : s + step] = windows[torch.arange(len(r)), T + lags[s : s + step]]
        return out


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


def _extract_shape(aligned: torch.Tensor, scatter: torch.Tensor, reference: np.ndarray) -> np.ndarray:
    """tslearn's shape extraction: top eigenvector of Q^T (Xp^T Xp) Q, sign closer to the members.

    `scatter` is Q^T S Q = Yc^T Yc (Yc: the row-centred aligned members), float64 [T, T]. With
    fewer members than time steps the small Gram matrix Yc Yc^T (same top eigenvalue) is used."""
    m, T = aligned.shape
    dtype = aligned.dtype
    # the matrices carry the data's rounding: solving far below it buys nothing; float32 fits
    # cap the passes (clusters with a shape converge well within them, see _top_eigvec_iterative)
    tol, passes = (1e-11, 150) if dtype == torch.float64 else (1e-6, 30)
    ref = torch.from_numpy(np.asarray(reference, dtype=np.float64))
    if m < T:
        centred = _centred(aligned)
        with _parallel(m * m * T // 64):
            gram = (centred @ centred.T).double()
        if m <= _EXACT_GRAM_EIGH_MAX:
            u = torch.linalg.eigh(gram)[1][:, -1]
        else:
            u = _top_eigvec_iterative(gram, (centred @ ref.to(dtype)).double(), tol, passes)
        mu = (centred.T @ u.to(dtype)).double()
        mu = mu / torch.linalg.vector_norm(mu)
    elif T <= _EXACT_EIGH_MAX:
        mu = torch.linalg.eigh(scatter)[1][:, -1]
    else:
        mu = _top_eigvec_iterative(scatter, ref - ref.mean(), tol, passes)
    # Both mu and -mu are eigenvectors: keep the one with the smaller summed distance to members.
    with _parallel(m * T):
        proj = (aligned @ mu.to(dtype)).double()
        sq = (aligned * aligned).sum(dim=1).double()
    plus = torch.sqrt(torch.clamp(sq - 2 * proj + 1, min=0)).sum()
    minus = torch.sqrt(torch.clamp(sq + 2 * proj + 1, min=0)).sum()
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
                with _parallel(len(part) * sbd.T * sbd.T // 64):
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
            return torch.float64 if n * T <= _FLOAT64_MAX_VALUES else torch.float32
        if self.dtype in (np.float32, torch.float32, "float32"):
            return torch.float32
        if self.dtype in (np.float64, torch.float64, "float64"):
            return torch.float64
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")

    # -- the algorithm
    def _assign(self, sbd: _SBD, centroids: np.ndarray, previous: _Assignment | None, drift: np.ndarray | None):
        """Nearest centroid by SBD for every series, computing only pairs that could win."""
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
        if torch.bincount(labels, minlength=K).min() == 0:
            raise EmptyClusterError
        known = torch.isfinite(exact)
        bounds = torch.where(known, exact, bounds)
        inertia = float((best.double() ** 2).sum() / sbd.n)
        self._pairs_computed += sbd.n + len(cand_rows)
        return _Assignment(labels.numpy(), lags[rows, labels], inertia, bounds)

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
        with _serial():
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


def sbd_to_centroids(X, centroids, dtype=None) -> np.ndarray:
    """Shape-based distance [n, K] between z-normalised series and centroids of the same length."""
    X = znormalize(_as_series_matrix(X))
    C = znormalize(_as_series_matrix(centroids, "centroids")).astype(np.float64)
    if X.shape[1] != C.shape[1]:
        raise ValueError(f"series have length {X.shape[1]} but centroids have length {C.shape[1]}")
    n, T = X.shape
    if dtype is None:
        tdtype = torch.float64 if n * T <= _FLOAT64_MAX_VALUES else torch.float32
    else:
        tdtype = torch.float32 if dtype in (np.float32, torch.float32, "float32") else torch.float64
    with _serial():
        sbd = _SBD(X, tdtype, max_cached_bytes=0)
        Cfc, cnorms, _ = sbd.centroid_terms(C)
        dist, _ = sbd.all_pairs(Cfc, cnorms)
    return dist.double().numpy()


def aligned_members(X, centroid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-normalised rows of X shifted onto `centroid` by their best SBD lag (zero-filled), their
    SBD to it and the lags (aligned[i, t] = x_i[t + lag_i]): what shape extraction sees."""
    X = znormalize(_as_series_matrix(X)).astype(np.float64)
    c = _as_series_matrix(np.asarray(centroid, dtype=np.float64).reshape(1, -1), "centroid")
    if X.shape[1] != c.shape[1]:
        raise ValueError(f"series have length {X.shape[1]} but the centroid has length {c.shape[1]}")
    with _serial():
        sbd = _SBD(X, torch.float64, max_cached_bytes=0)
        Cfc, cnorms, _ = sbd.centroid_terms(znormalize(c).astype(np.float64))
        rows = torch.arange(sbd.n)
        dist, lag = sbd.pairs(rows, torch.zeros(sbd.n, dtype=torch.long), Cfc, cnorms)
        aligned = sbd.aligned(rows, lag)
    return aligned.numpy(), dist.numpy(), lag.numpy()


# --------------------------------------------------------------------------- choosing K


def _pairwise_sbd(X: np.ndarray) -> np.ndarray:
    """Symmetric SBD matrix of z-normalised series (float32 FFTs, upper triangle only:
    SBD(x, y) == SBD(y, x) since swapping the two only flips the sign of every lag)."""
    sbd = _SBD(X, torch.float32)
    Cfc, cnorms, _ = sbd.centroid_terms(X.astype(np.float64))
    n = len(X)
    rows, cols = torch.triu_indices(n, n, offset=1)
    D = np.zeros((n, n))
    if len(rows):
        d, _ = sbd.pairs(rows, cols, Cfc, cnorms)  # batched per column: one FFT call per series
        D[rows.numpy(), cols.numpy()] = d.double().numpy()
    return np.clip(D + D.T, 0.0, 2.0)


def _silhouette(D: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a precomputed distance matrix (singleton clusters score 0, as sklearn)."""
    ks = np.unique(labels)
    if len(ks) < 2:
        return float("nan")
    onehot = (labels[:, None] == ks[None]).astype(np.float64)
    sizes = onehot.sum(axis=0)
    sums = D @ onehot  # [n, k] total distance to each cluster
    own = np.searchsorted(ks, labels)
    own_size = sizes[own]
    a = np.where(own_size > 1, sums[np.arange(len(D)), own] / np.maximum(own_size - 1, 1), 0.0)
    mean_other = sums / sizes[None]
    mean_other[np.arange(len(D)), own] = np.inf
    b = mean_other.min(axis=1)
    s = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def choose_k(X, k_range=range(3, 13), sample=2000, random_state=0, progress=False, max_iter=50):
    """Pick K by the mean silhouette (SBD) of K-Shape fits on a random subsample of X.

    Returns (best_k, {k: silhouette}); a k whose fits all leave a cluster empty is left out."""
    X = _as_series_matrix(X)
    ks = sorted({int(k) for k in k_range})
    if not ks:
        raise ValueError("k_range is empty")
    if ks[0] < 2:
        raise ValueError(f"silhouette needs k >= 2, got k_range starting at {ks[0]}")
    if not isinstance(sample, (int, np.integer)) or sample < 3:
        raise ValueError(f"sample must be an integer >= 3, got {sample!r}")
    live = ~is_flat(X)
    if live.sum() < 3:
        raise ValueError(f"need at least 3 non-flat series to choose k, got {int(live.sum())}")
    Xl = znormalize(X[live])
    rng = np.random.RandomState(random_state)
    if len(Xl) > sample:
        Xl = Xl[np.sort(rng.choice(len(Xl), sample, replace=False))]
    ks = [k for k in ks if k < len(Xl)]
    if not ks:
        raise ValueError(f"every k in k_range needs more than the {len(Xl)} non-flat series available")
    with _serial():
        D = _pairwise_sbd(Xl)
    scores: dict[int, float] = {}
    iterator = ks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ks, desc="choosing K (silhouette)", unit="k")
    for k in iterator:
        model = KShape(k, max_iter=max_iter, random_state=random_state, n_init=1)
        try:
            labels = model.fit(Xl).labels_
        except EmptyClusterError:
            continue
        score = _silhouette(D, labels)
        if np.isfinite(score):
            scores[k] = round(score, 6)
    if not scores:
        raise ValueError(f"no k in {ks} gave a usable clustering of {len(Xl)} series")
    best = max(scores, key=lambda k: (scores[k], -k))  # ties go to the smaller k
    return best, scores


# --------------------------------------------------------------------------- describing clusters


def _autocorrelation(Z: np.ndarray, max_lag: int) -> np.ndarray:
    """Mean autocorrelation (lags 0..max_lag) of z-normalised rows, via zero-padded FFT."""
    T = Z.shape[1]
    L = _fft_length(T)
    spec = np.fft.rfft(Z, n=L, axis=1)
    acov = np.fft.irfft(spec * spec.conj(), n=L, axis=1)[:, : max_lag + 1]
    acov /= np.maximum(acov[:, :1], 1e-12)
    return acov.mean(axis=0)


def _dominant_period(acf: np.ndarray, threshold: float = 0.3, prominence: float = 0.2) -> tuple[int | None, float]:
    """Lag (2..len-2 minutes) of the strongest real ACF peak; its smallest strong divisor wins.

    A real peak rises by `prominence` above the lowest ACF at a shorter lag, so the slow decay
    of a smooth (diurnal) series, with noise wiggles on it, is not mistaken for a period."""
    trough = np.minimum.accumulate(acf)
    peaks = [
        lag
        for lag in range(2, len(acf) - 1)
        if acf[lag] >= acf[lag - 1]
        and acf[lag] > acf[lag + 1]
        and acf[lag] >= threshold
        and acf[lag] - trough[lag - 1] >= prominence
    ]
    if not peaks:
        return None, 0.0
    top = max(peaks, key=lambda lag: (acf[lag], -lag))
    # a period p also peaks at 2p, 3p...: prefer the fundamental when it is nearly as strong
    for lag in peaks:
        if lag < top and top % lag == 0 and acf[lag] >= 0.85 * acf[top]:
            return int(lag), float(acf[lag])
    return int(top), float(acf[top])


def _peak_hours(profile_hourly: np.ndarray, max_hours: int = 8) -> list[int]:
    """Contiguous (wrapping) run of hours around the maximum within 25% of the daily range."""
    hi, lo = float(profile_hourly.max()), float(profile_hourly.min())
    if hi - lo <= 1e-12:
        return []
    top = int(np.argmax(profile_hourly))
    cutoff = hi - 0.25 * (hi - lo)
    right = left = 0
    while left + right + 1 < max_hours and profile_hourly[(top + right + 1) % 24] >= cutoff:
        right += 1
    while left + right + 1 < max_hours and profile_hourly[(top - left - 1) % 24] >= cutoff:
        left += 1
    return [(top - left + i) % 24 for i in range(left + right + 1)]


def _hour_span(hours: list[int]) -> str:
    return f"{hours[0]:02d}-{(hours[-1] + 1) % 24:02d}h" if len(hours) > 1 else f"{hours[0]:02d}h"


def describe_centroid(centroid_1440, member_raw_days=None) -> dict:
    """Describe a daily shape in words: kind (idle|timer|diurnal|spiky|bursty), peak hours, period.

    The period comes from the members' mean autocorrelation when members are given (phase-free,
    so members need not be aligned), else from the centroid; peak hours from the members'
    mean z-normalised hourly profile when given (clock time), else from the centroid."""
    c = _as_series_matrix(np.asarray(centroid_1440, dtype=np.float64).reshape(1, -1), "centroid")[0]
    T = len(c)
    if T != MINUTES_PER_DAY:
        raise ValueError(f"a daily centroid has {MINUTES_PER_DAY} minutes, got {T}")
    members = None
    if member_raw_days is not None:
        members = _as_series_matrix(member_raw_days, "member_raw_days")
        if members.shape[1] != T:
            raise ValueError(f"member days have {members.shape[1]} minutes, expected {T}")
        members = members[~is_flat(members)]
        if len(members) > 500:  # a deterministic, evenly spread subset is plenty for statistics
            members = members[np.linspace(0, len(members) - 1, 500).round().astype(int)]
        if len(members) == 0:
            members = None
    if is_flat(c[None])[0]:
        return {"label": "idle/flat", "kind": "idle", "peak_hours": [], "period_minutes": None}

    z = znormalize(c[None])[0]
    Zm = znormalize(members) if members is not None else z[None]
    max_lag = 720
    acf = _autocorrelation(Zm, max_lag)
    period, strength = _dominant_period(acf)

    profile = Zm.mean(axis=0) if members is not None else z
    hourly = profile.reshape(24, 60).mean(axis=1)
    peak_hours = _peak_hours(hourly)

    # How much of the centroid's variance is slow (periods of 3 h or more)?
    spec = np.abs(np.fft.rfft(z)) ** 2
    freqs = np.fft.rfftfreq(T, d=1.0)  # cycles per minute
    slow_share = float(spec[(freqs > 0) & (freqs <= 1 / 180)].sum() / max(spec[1:].sum(), 1e-12))
    # Spikiness: share of the positive excess mass held by the top 1% of minutes.
    excess = np.clip(z, 0, None)
    top = np.sort(excess)[::-1][: max(1, T // 100)]
    spike_share = float(top.sum() / max(excess.sum(), 1e-12))
    # K-Shape centroids sit at an arbitrary phase: clock times come from the members' profile.
    spike_minute = int(np.argmax(profile))
    while spike_minute > 0 and profile[spike_minute - 1] >= 0.5 * profile[int(np.argmax(profile))]:
        spike_minute -= 1  # report when the spike starts, not its noisiest minute

    if period is not None and period <= 120 and strength >= 0.3:
        kind, label = "timer", f"timer every {period} min"
    elif spike_share >= 0.5:
        if period is not None and strength >= 0.3:
            kind, label = "timer", f"spike every {_minutes_text(period)}"
        else:
            kind = "spiky"
            hour = spike_minute // 60
            if members is not None and len(members) >= 5:
                # one batch time, or spikes scattered over the day that only line up after shifting?
                member_hours = Zm.argmax(axis=1) // 60
                top_hour = int(np.bincount(member_hours, minlength=24).argmax())
                near = np.minimum((member_hours - top_hour) % 24, (top_hour - member_hours) % 24) <= 1
                scattered = near.mean() < 0.4
            else:
                scattered = False
            if scattered:
                label, peak_hours = "sporadic spikes at varying times", []
            else:
                label = "midnight batch spike" if hour in (23, 0) else f"batch spike at {hour:02d}:{spike_minute % 60:02d}"
                peak_hours = [hour]
    elif slow_share >= 0.5 and peak_hours:
        kind, label = "diurnal", f"diurnal, peak {_hour_span(peak_hours)}"
    elif period is not None and strength >= 0.3:
        kind, label = "timer", f"periodic every {_minutes_text(period)}"
    else:
        kind = "bursty"
        label = "bursty" + (f", busiest {_hour_span(peak_hours)}" if peak_hours and slow_share >= 0.2 else "")
    return {
        "label": label,
        "kind": kind,
        "peak_hours": [int(h) for h in peak_hours],
        "period_minutes": int(period) if period is not None else None,
    }


def _minutes_text(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


# --------------------------------------------------------------------------- daily patterns


@dataclass
class ClusteringResult:
    k: int
    labels: np.ndarray  # [n_days] cluster id, -1 for idle/flat days
    centroids: np.ndarray  # [k, 1440] z-normalised
    descriptions: list[dict]
    silhouette: dict[int, float] = field(default_factory=dict)
    inertia: float = float("nan")
    n_iter: int = 0

    @property
    def sizes(self) -> dict[int, int]:
        ids, counts = np.unique(self.labels, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}


def cluster_days(
    days_raw,
    k=None,
    k_range=range(3, 13),
    random_state=0,
    max_iter=50,
    progress=False,
    n_init=2,
    silhouette_sample=2000,
) -> ClusteringResult:
    """K-Shape clustering of daily patterns [n_days, 1440]; idle/constant days get label -1."""
    days = _as_series_matrix(days_raw, "days")
    if days.shape[1] != MINUTES_PER_DAY:
        raise ValueError(f"daily patterns must have {MINUTES_PER_DAY} minutes per row, got {days.shape[1]}")
    flat = is_flat(days)
    live_idx = np.flatnonzero(~flat)
    n_live = len(live_idx)
    if k is not None and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n_live == 0:
        raise ValueError(f"all {len(days)} days are idle/constant: there is no shape to cluster")
    Z = znormalize(days[live_idx]).astype(np.float32 if n_live * MINUTES_PER_DAY > _FLOAT64_MAX_VALUES else np.float64)

    silhouette: dict[int, float] = {}
    if k is None:
        k, silhouette = choose_k(Z, k_range, sample=silhouette_sample, random_state=random_state, progress=progress, max_iter=max_iter)
    elif k > n_live:
        raise ValueError(f"k={k} clusters need at least {k} non-flat days, got {n_live}")

    model = KShape(int(k), max_iter=max_iter, random_state=random_state, n_init=n_init)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter * n_init, desc=f"K-Shape k={k} on {n_live} days", unit="it")
        model.iteration_callback = lambda it, inertia: (bar.update(1), bar.set_postfix(inertia=f"{inertia:.4f}"))
    try:
        model.fit(Z)
    finally:
        if bar is not None:
            bar.close()

    labels = np.full(len(days), -1, dtype=np.int64)
    labels[live_idx] = model.labels_
    if not silhouette and k >= 2:
        sample = live_idx
        rng = np.random.RandomState(random_state)
        if n_live > silhouette_sample:
            sample = np.sort(rng.choice(live_idx, silhouette_sample, replace=False))
        D = _pairwise_sbd(znormalize(days[sample]))
        score = _silhouette(D, labels[sample])
        if np.isfinite(score):
            silhouette = {int(k): round(score, 6)}
    centroids = model.cluster_centers_[:, :, 0].astype(np.float32)
    descriptions = [describe_centroid(centroids[j], days[labels == j]) for j in range(int(k))]
    return ClusteringResult(
        k=int(k),
        labels=labels,
        centroids=centroids,
        descriptions=descriptions,
        silhouette=silhouette,
        inertia=float(model.inertia_),
        n_iter=int(model.n_iter_),
    )
