"""The gate of the mixture: a function's trailing window -> the cluster whose daily shape it matches.

A K-Shape centroid is a z-normalised daily pattern (1440 minutes). A trailing window of t minutes
(60 <= t, the last 1440 used when longer) is compared with every phase of every centroid, read
cyclically because a day's pattern wraps at midnight: the score is the best Pearson correlation
between the window and a centroid segment of the same length, and the distance is 1 - score
(0 = identical shape, 2 = opposite). For t = 1440 this is the shape-based distance K-Shape uses,
restricted to cyclic shifts. Windows with no variation (idle or constant) go to cluster -1, which
the model serves with its seasonal-naive floor.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mesp_core.forecasting.fftsize import fast_fft_length
from mesp_core.forecasting.numpy_nets import check_backend

IDLE_CLUSTER = -1
_FLAT_STD = 1e-6


@dataclass(frozen=True)
class Route:
    cluster: int
    distance: float


def as_context_list(context) -> list[np.ndarray]:
    """Accept a 2-D array [n, t] or a sequence of 1-D arrays; return float32 1-D arrays."""
    torch = sys.modules.get("torch")  # a tensor can only come from a torch the caller imported
    if isinstance(context, np.ndarray) or (torch is not None and torch.is_tensor(context)):
        array = np.asarray(context, dtype=np.float32)
        if array.ndim == 1:
            raise ValueError("context must be 2-D [n_functions, t] or a list of 1-D arrays, got a 1-D array")
        if array.ndim != 2:
            raise ValueError(f"context must be 2-D [n_functions, t], got shape {array.shape}")
        return [row for row in array]
    if isinstance(context, Sequence):
        rows = [np.asarray(row, dtype=np.float32) for row in context]
        for i, row in enumerate(rows):
            if row.ndim != 1:
                raise ValueError(f"context[{i}] must be 1-D, got shape {row.shape}")
        return rows
    raise ValueError(f"context must be an array or a list of arrays, got {type(context).__name__}")


class Router:
    """Nearest centroid by cyclic shape correlation, batched with float32 FFTs: numpy's (`backend`
    "numpy", which serves a model without importing torch) or torch's (training, the torch backend).
    The two give the same routes; distances differ by float32 rounding, which a near-flat centroid
    segment amplifies on short windows (up to ~1e-3 on a 100-minute context, either vs float64)."""

    def __init__(self, centroids: np.ndarray, resolution: int = 5, chunk: int = 512, backend: str = "torch"):
        centroids = np.asarray(centroids, dtype=np.float32)
        if centroids.ndim != 2 or centroids.shape[0] == 0:
            raise ValueError(f"centroids must be [K, T] with K >= 1, got {centroids.shape}")
        if resolution < 1 or centroids.shape[1] % resolution:
            raise ValueError(f"resolution {resolution} must divide the centroid length {centroids.shape[1]}")
        self.full_centroids = centroids
        # Shapes are compared on `resolution`-minute means: the cluster a window belongs to shows at
        # that scale, and it makes routing 10,000 functions cheap (FFTs 5x shorter).
        self.resolution = resolution
        self.centroids = _block_mean(centroids, resolution)
        self.max_window = self.centroids.shape[1]
        self.chunk = chunk
        self.backend = check_backend(backend, allow_auto=False)
        self._spectra: dict[int, tuple] = {}

    @property
    def n_clusters(self) -> int:
        return self.centroids.shape[0]

    def _centroid_terms(self, t: int):
        """FFT of the cyclically extended centroids and the std of every length-t segment."""
        cached = self._spectra.get(t)
        if cached is not None:
            return cached
        c = self.centroids.astype(np.float64)
        period = c.shape[1]
        extended = np.concatenate([c, c[:, : t - 1]], axis=1)  # every phase has a full segment
        n_fft = fast_fft_length(extended.shape[1])
        cumsum = np.pad(np.cumsum(extended, axis=1), ((0, 0), (1, 0)))
        cumsum_sq = np.pad(np.cumsum(extended**2, axis=1), ((0, 0), (1, 0)))
        seg_sum = cumsum[:, t : t + period] - cumsum[:, :period]
        seg_sq = cumsum_sq[:, t : t + period] - cumsum_sq[:, :period]
        seg_var = np.maximum(seg_sq / t - (seg_sum / t) ** 2, 0.0)
        seg_std = np.sqrt(seg_var).astype(np.float32)
        if self.backend == "torch":
            import torch

            spectrum = torch.fft.rfft(torch.from_numpy(extended.astype(np.float32)), n=n_fft, dim=1)
        else:
            spectrum = _rfft32(extended.astype(np.float32), n_fft)
        cached = (spectrum, seg_std, n_fft)
        self._spectra[t] = cached
        return cached

    def distances(self, context) -> np.ndarray:
        """[n, K] distances (1 - best cyclic correlation); rows of idle windows are NaN."""
        if isinstance(context, np.ndarray) and context.ndim == 2:
            # One length for every row: cut the window from the array itself, no per-row copies.
            block = np.asarray(context, dtype=np.float32)
            out = np.full((block.shape[0], self.n_clusters), np.nan, dtype=np.float32)
            t = self._window_blocks(block.shape[1])
            if t >= 2 and block.shape[0]:
                out[:] = self._trailing_distances(block, t)
            return out
        rows = as_context_list(context)
        out = np.full((len(rows), self.n_clusters), np.nan, dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_length.setdefault(self._window_blocks(len(row)), []).append(i)
        for t, members in by_length.items():
            if t < 2:
                continue
            span = t * self.resolution
            out[members] = self._trailing_distances(np.stack([rows[i][len(rows[i]) - span :] for i in members]), t)
        return out

    def _window_blocks(self, minutes: int) -> int:
        """Blocks of `resolution` minutes the router reads from a context of this length."""
        return min(minutes // self.resolution, self.max_window)

    def _trailing_distances(self, block: np.ndarray, t: int) -> np.ndarray:
        """Distances of the last `t` blocks of every row of `block` [m, >= t * resolution]."""
        span = t * self.resolution
        windows = np.asarray(block[:, block.shape[1] - span :], dtype=np.float32)
        return self._distances_same_length(_block_mean(windows, self.resolution))

    def _distances_same_length(self, windows: np.ndarray) -> np.ndarray:
        t = windows.shape[1]
        spectrum, seg_std, n_fft = self._centroid_terms(t)
        period = self.centroids.shape[1]
        result = np.full((len(windows), self.n_clusters), np.nan, dtype=np.float32)
        if self.backend == "torch":
            return _torch_distances(windows, spectrum, seg_std, n_fft, period, self.chunk, result)
        w = np.asarray(windows, dtype=np.float32)
        std = w.std(axis=1)
        live = std > _FLAT_STD * (1.0 + np.abs(w).mean(axis=1))
        if not live.any():
            return result
        live_idx = np.flatnonzero(live)
        wz = (w[live_idx] - w[live_idx].mean(axis=1, keepdims=True)) / std[live_idx, None]
        safe_std = np.where(seg_std > 1e-6, seg_std, np.float32(np.inf))
        for start in range(0, len(live_idx), self.chunk):
            block = wz[start : start + self.chunk]
            w_spec = _rfft32(block, n_fft)
            # valid cross-correlation: position s = sum_i w[i] * extended[s + i]
            corr = np.fft.irfft(spectrum[None, :, :] * w_spec.conj()[:, None, :], n=n_fft, axis=2)
            corr = corr[:, :, :period].astype(np.float32, copy=False) / (t * safe_std[None, :, :])
            best = np.clip(corr.max(axis=2), -1.0, 1.0)
            result[live_idx[start : start + self.chunk]] = 1.0 - best
        return result

    def route(self, context) -> tuple[np.ndarray, np.ndarray]:
        """Cluster id per function (IDLE_CLUSTER for windows with no variation) and its distance."""
        dist = self.distances(context)
        idle = np.isnan(dist).all(axis=1) if dist.shape[1] else np.ones(len(dist), bool)
        filled = np.where(np.isnan(dist), np.inf, dist)
        clusters = np.where(idle, IDLE_CLUSTER, filled.argmin(axis=1)).astype(np.int64)
        best = np.where(idle, 0.0, filled.min(axis=1, initial=np.inf)).astype(np.float32)
        return clusters, best


def _torch_distances(windows: np.ndarray, spectrum, seg_std: np.ndarray, n_fft: int, period: int, chunk: int,
                     result: np.ndarray) -> np.ndarray:
    """Router._distances_same_length with torch's FFTs and reductions (the torch backend)."""
    import torch

    t = windows.shape[1]
    w = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    std = w.std(dim=1, unbiased=False)
    live = std > _FLAT_STD * (1.0 + w.abs().mean(dim=1))
    if not bool(live.any()):
        return result
    live_idx = torch.nonzero(live).squeeze(1)
    wz = (w[live_idx] - w[live_idx].mean(dim=1, keepdim=True)) / std[live_idx, None]
    seg_std = torch.from_numpy(seg_std)
    safe_std = torch.where(seg_std > 1e-6, seg_std, torch.full_like(seg_std, float("inf")))
    for start in range(0, len(live_idx), chunk):
        w_spec = torch.fft.rfft(wz[start: start + chunk], n=n_fft, dim=1)
        corr = torch.fft.irfft(spectrum[None, :, :] * w_spec.conj()[:, None, :], n=n_fft, dim=2)
        corr = corr[:, :, :period] / (t * safe_std[None, :, :])
        best = corr.amax(dim=2).clamp(-1.0, 1.0)
        result[live_idx[start: start + chunk].numpy()] = (1.0 - best).numpy()
    return result


def _rfft32(x: np.ndarray, n: int) -> np.ndarray:
    """rfft as complex64 (numpy >= 2 computes float32 input in single precision; older numpy in double)."""
    return np.fft.rfft(x, n=n, axis=1).astype(np.complex64, copy=False)


def _block_mean(x: np.ndarray, block: int) -> np.ndarray:
    """Means of consecutive `block`-minute blocks, [n, t] -> [n, t / block], float32."""
    if block == 1:
        return np.ascontiguousarray(x, dtype=np.float32)
    # Strided adds in column order: the same sums as reshape(...).mean(axis=2), 3x faster.
    total = np.array(x[:, 0::block], dtype=np.float32)
    for offset in range(1, block):
        total += x[:, offset::block]
    return total / np.float32(block)
