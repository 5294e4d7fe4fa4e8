"""Shape-based distance (SBD), batched: the distance K-Shape and the router's cluster shapes rest on.

SBD(x, c) = 1 - max over lags of the normalised cross-correlation of two z-normalised series
(Paparrizos & Gravano, SIGMOD 2015). `_SBD` keeps one zero-padded rFFT per series and computes
cross-correlations for many (series, centroid) pairs per inverse FFT call; members are shift-aligned
onto a centroid in one gather. Input checks and z-normalisation follow tslearn's conventions.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

# tslearn's normalized_cc treats norm products below this as "no correlation" (distance 1).
_TINY_DENOM = 1e-9
# Above this many values (n * T) the fit runs in float32; below, float64 like tslearn.
FLOAT64_MAX_VALUES = 1 << 22
# Work is split in two: small torch ops (per-cluster vectors, 8-column blocks, tiny eigh) run on
# one thread, where thread-pool hand-offs would cost more than they save (badly so on shared
# cores); only big batched ops (inverse-FFT batches, Gram and bound matrix products) use the
# caller's torch thread count.
_PARALLEL_MIN_VALUES = 1 << 20
_pool_threads = [0]  # caller's thread count while a serial() block is active, else 0


@contextlib.contextmanager
def serial():
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
def parallel(n_values: int):
    """Inside serial(): give a big op (n_values elements) the caller's threads back."""
    threads = _pool_threads[0]
    if not threads or threads == 1 or n_values < _PARALLEL_MIN_VALUES:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(1)


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
        with parallel(len(rows) * self.L):
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
                with parallel(len(r) * self.L):
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
            with parallel(len(rows) * K * self.L):
                cc = torch.fft.irfft(self.spectra(rows)[:, None, :] * Cfc[None], n=self.L, dim=2)
                if self.L - self.T + 1 > self.T:
                    cc[:, :, self.T : self.L - self.T + 1] = -math.inf
                best, arg = cc.max(dim=2)
            dist[s : s + step], lag[s : s + step] = self._finish(best, arg, self.norms[rows, None] * cnorms[None])
        return dist, lag

    def lower_bounds(self, Cmag: torch.Tensor, cnorms: torch.Tensor) -> torch.Tensor:
        """Per pair, 1 - sum_f w_f |X_f||C_f| / (|x||c|) <= SBD (triangle inequality on the iFFT)."""
        if self.Xmag is not None:
            with parallel(self.n * self.F * len(Cmag)):
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
            with parallel(len(r) * T):
                buffer[: len(r), T : 2 * T].copy_(self.X[r])
                windows = buffer[: len(r)].unfold(1, T, 1)  # [m, 2T+1, T] view: window o starts at o - T
                out[s : s + step] = windows[torch.arange(len(r)), T + lags[s : s + step]]
        return out



def sbd_to_centroids(X, centroids, dtype=None) -> np.ndarray:
    """Shape-based distance [n, K] between z-normalised series and centroids of the same length."""
    X = znormalize(_as_series_matrix(X))
    C = znormalize(_as_series_matrix(centroids, "centroids")).astype(np.float64)
    if X.shape[1] != C.shape[1]:
        raise ValueError(f"series have length {X.shape[1]} but centroids have length {C.shape[1]}")
    n, T = X.shape
    if dtype is None:
        tdtype = torch.float64 if n * T <= FLOAT64_MAX_VALUES else torch.float32
    else:
        tdtype = torch.float32 if dtype in (np.float32, torch.float32, "float32") else torch.float64
    with serial():
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
    with serial():
        sbd = _SBD(X, torch.float64, max_cached_bytes=0)
        Cfc, cnorms, _ = sbd.centroid_terms(znormalize(c).astype(np.float64))
        rows = torch.arange(sbd.n)
        dist, lag = sbd.pairs(rows, torch.zeros(sbd.n, dtype=torch.long), Cfc, cnorms)
        aligned = sbd.aligned(rows, lag)
    return aligned.numpy(), dist.numpy(), lag.numpy()



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


