"""Training windows and context preparation shared by every forecasting expert.

A *context* is a function's per-minute invocation counts before a forecast origin, oldest first.
Experts see fixed-width contexts (their ``input_size``); shorter histories are left-padded by tiling
the available history backwards, so a 15-minute timer in a 90-minute context still looks like a
15-minute timer across the whole input (zero padding would look like an idle period instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mesp_core.constants import MIN_CONTEXT

__all__ = ["WindowSet", "prepare_contexts", "make_windows", "window_origins", "cut_windows", "validate_counts"]


@dataclass
class WindowSet:
    """Supervised windows: ``x`` contexts [N, L] and ``y`` targets [N, H], raw counts (float32).

    ``series`` is the source series index of each window (to split or group by function) and
    ``origin`` the minute index of the forecast origin inside that series (the first target minute).
    """

    x: np.ndarray
    y: np.ndarray
    series: np.ndarray
    origin: np.ndarray | None = None

    def __post_init__(self):
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        self.y = np.ascontiguousarray(self.y, dtype=np.float32)
        self.series = np.asarray(self.series, dtype=np.int64)
        if self.x.ndim != 2 or self.y.ndim != 2:
            raise ValueError(
                f"WindowSet needs 2-D x [N, L] and y [N, H], got shapes {self.x.shape} and {self.y.shape}"
            )
        n = self.x.shape[0]
        if self.y.shape[0] != n or self.series.shape != (n,):
            raise ValueError(
                f"WindowSet parts disagree on the number of windows: x {self.x.shape}, "
                f"y {self.y.shape}, series {self.series.shape}"
            )
        if self.origin is not None:
            self.origin = np.asarray(self.origin, dtype=np.int64)
            if self.origin.shape != (n,):
                raise ValueError(f"WindowSet origin has shape {self.origin.shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_size(self) -> int:
        return int(self.x.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.y.shape[1])

    def subset(self, idx) -> "WindowSet":
        """Windows selected by an index array or boolean mask."""
        idx = np.asarray(idx)
        return WindowSet(
            self.x[idx],
            self.y[idx],
            self.series[idx],
            None if self.origin is None else self.origin[idx],
        )


def validate_counts(values: np.ndarray, what: str) -> None:
    """Raise ValueError unless ``values`` are finite, non-negative counts."""
    if values.size == 0:
        return
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"{what} contains a non-finite value (NaN or inf) at index {tuple(int(i) for i in bad)}")
    if (values < 0).any():
        bad = np.argwhere(values < 0)[0]
        raise ValueError(
            f"{what} contains a negative value ({float(values[tuple(bad)])}) at index "
            f"{tuple(int(i) for i in bad)}; invocation counts must be >= 0"
        )


def _as_float_1d(row, what: str) -> np.ndarray:
    arr = np.asarray(row)
    if arr.dtype.kind != "f":  # float32/float64 rows are used as they are (no copy)
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} is not numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    return arr


def _tile_index(length: int, input_size: int) -> np.ndarray:
    """Indices that cut a context of ``length`` to its last ``input_size`` minutes or tile it backwards.

    Position j of the output takes minute (length - input_size + j) mod length, so the last
    ``length`` positions are the context itself and earlier ones repeat it with period ``length``.
    """
    return (length - input_size + np.arange(input_size)) % length


def _tile_block(arr: np.ndarray, input_size: int) -> np.ndarray:
    """Same as ``arr[:, _tile_index(t, input_size)]`` with block copies (much faster than a gather)."""
    n, t = arr.shape
    out = np.empty((n, input_size), dtype=np.float32)
    end = input_size
    while end > 0:
        k = min(t, end)
        out[:, end - k : end] = arr[:, t - k :]
        end -= k
    return out


def prepare_contexts(
    contexts: np.ndarray | Sequence[np.ndarray], input_size: int, *, min_length: int = 1
) -> np.ndarray:
    """Cut or pad contexts to exactly ``input_size`` minutes: float32 [n, input_size].

    ``contexts`` is a 2-D array [n, t] (oldest minute first) or a list of 1-D arrays of different
    lengths. Longer contexts keep their last ``input_size`` minutes; shorter ones are left-padded by
    tiling them backwards. Raises ValueError for non-numeric, non-finite or negative values and for
    contexts shorter than ``min_length``.
    """
    input_size = int(input_size)
    if input_size < 1:
        raise ValueError(f"input_size must be >= 1, got {input_size}")
    min_length = max(1, int(min_length))

    if isinstance(contexts, np.ndarray) and contexts.ndim == 2:
        try:
            arr = np.asarray(contexts, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"contexts are not numeric: {exc}") from None
        n, t = arr.shape
        if t < min_length:
            raise ValueError(f"contexts have {t} minutes; at least {min_length} are needed")
        if t >= input_size:
            arr = arr[:, t - input_size :]  # only the minutes used need checking
            validate_counts(arr, "contexts")
            return np.ascontiguousarray(arr)
        validate_counts(arr, "contexts")
        return _tile_block(arr, input_size)

    if isinstance(contexts, np.ndarray) and contexts.ndim != 1 and contexts.dtype != object:
        raise ValueError(f"contexts must be a 2-D array [n, t] or a list of 1-D arrays, got shape {contexts.shape}")
    if isinstance(contexts, (str, bytes)) or not isinstance(contexts, Iterable):
        raise ValueError("contexts must be a 2-D array [n, t] or a list of 1-D arrays")
    rows = list(contexts)
    out = np.empty((len(rows), input_size), dtype=np.float32)
    index_cache: dict[int, np.ndarray] = {}
    for i, row in enumerate(rows):
        arr = _as_float_1d(row, f"context {i}")
        if arr.shape[0] < min_length:
            raise ValueError(f"context {i} has {arr.shape[0]} minutes; at least {min_length} are needed")
        validate_counts(arr, f"context {i}")
        t = arr.shape[0]
        if t >= input_size:
            out[i] = arr[t - input_size :]
        else:
            if t not in index_cache:
                index_cache[t] = _tile_index(t, input_size)
            out[i] = arr[index_cache[t]]
    return out


def _as_series_list(series) -> list[np.ndarray]:
    if isinstance(series, np.ndarray) and series.ndim == 2:
        rows = [series[i] for i in range(series.shape[0])]
    elif isinstance(series, np.ndarray) and series.ndim == 1 and series.dtype != object:
        raise ValueError("series must be a 2-D array [n, t] or a list of 1-D arrays, got a single 1-D array")
    else:
        rows = list(series)
    out = []
    for i, row in enumerate(rows):
        arr = _as_float_1d(row, f"series {i}").astype(np.float32)
        validate_counts(arr, f"series {i}")
        out.append(arr)
    return out


def make_windows(
    series: Sequence[np.ndarray] | np.ndarray,
    input_size: int,
    horizon: int,
    origins: Iterable[int] | None = None,
    stride: int = 30,
    min_context: int = MIN_CONTEXT,
    rng: np.random.Generator | int | None = None,
    max_windows: int | None = None,
) -> WindowSet:
    """Cut supervised windows from per-function minute counts.

    A window at origin ``t`` of series ``s`` has context ``s[:t]`` (its last ``input_size`` minutes,
    left-padded by tiling when fewer than ``input_size`` but at least ``min_context`` exist) and target
    ``s[t:t+horizon]``. ``origins`` fixes the origins for every series (those without enough history
    or future in a series are skipped there); otherwise origins run every ``stride`` minutes backwards
    from the last possible one (``len - horizon``) down to ``min_context``. ``max_windows`` keeps a
    random subset (seeded by ``rng``, default seed 0) before any window is materialised.
    """
    input_size, horizon, stride, min_context = int(input_size), int(horizon), int(stride), int(min_context)
    if input_size < 1 or horizon < 1:
        raise ValueError(f"input_size and horizon must be >= 1, got {input_size} and {horizon}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min_context < 1:
        raise ValueError(f"min_context must be >= 1, got {min_context}")
    rows = _as_series_list(series)
    series_idx, origin = window_origins([s.shape[0] for s in rows], horizon, origins, stride, min_context, rng, max_windows)
    x, y = cut_windows(rows, series_idx, origin, input_size, horizon)
    return WindowSet(x=x, y=y, series=series_idx, origin=origin)


def window_origins(
    lengths: Sequence[int],
    horizon: int,
    origins: Iterable[int] | None = None,
    stride: int = 30,
    min_context: int = MIN_CONTEXT,
    rng: np.random.Generator | int | None = None,
    max_windows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which windows `make_windows` cuts from series of these lengths: (series index, origin) per
    window, grouped by series in order. Needs the lengths only, so the windows of a trace held in
    shards are chosen in one place and cut where the series are."""
    fixed = None if origins is None else np.asarray(sorted({int(o) for o in origins}), dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    if max_windows is not None:
        max_windows = int(max_windows)
        if max_windows < 0:
            raise ValueError(f"max_windows must be >= 0, got {max_windows}")
    if fixed is None and len(lengths) and (lengths == lengths[0]).all():
        # Equal lengths (every series of a trace): the same windows, computed without listing every
        # candidate (20 million at 30,000 functions x 14 days).
        per_series = np.arange(lengths[0] - horizon, min_context - 1, -stride, dtype=np.int64)[::-1]
        total = len(lengths) * len(per_series)
        keep = np.arange(total, dtype=np.int64)
        if max_windows is not None and total > max_windows:
            keep = np.sort(gen.choice(total, size=max_windows, replace=False))
        if not len(per_series):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return keep // len(per_series), per_series[keep % len(per_series)]

    series_idx, origin_idx = [], []
    for i, length in enumerate(lengths):
        last = int(length) - horizon
        if fixed is None:
            if last < min_context:
                continue
            o = np.arange(last, min_context - 1, -stride, dtype=np.int64)[::-1]
        else:
            o = fixed[(fixed >= min_context) & (fixed <= last)]
        series_idx.append(np.full(o.shape[0], i, dtype=np.int64))
        origin_idx.append(o)
    if series_idx:
        series_idx_arr = np.concatenate(series_idx)
        origin_arr = np.concatenate(origin_idx)
    else:
        series_idx_arr = np.zeros(0, dtype=np.int64)
        origin_arr = np.zeros(0, dtype=np.int64)
    if max_windows is not None and series_idx_arr.shape[0] > max_windows:
        keep = np.sort(gen.choice(series_idx_arr.shape[0], size=max_windows, replace=False))
        series_idx_arr, origin_arr = series_idx_arr[keep], origin_arr[keep]
    return series_idx_arr, origin_arr


def cut_windows(rows, series_idx: np.ndarray, origin: np.ndarray, input_size: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts x [n, input_size] and targets y [n, horizon] of the windows (series_idx, origin),
    cut from `rows` (a list of 1-D series or a 2-D array); windows grouped by series."""
    series_idx = np.asarray(series_idx, dtype=np.int64)
    origin = np.asarray(origin, dtype=np.int64)
    n = series_idx.shape[0]
    x = np.empty((n, input_size), dtype=np.float32)
    y = np.empty((n, horizon), dtype=np.float32)
    offsets = np.arange(-input_size, 0)
    target_offsets = np.arange(horizon)
    # Windows are grouped by series, so each series is gathered with one fancy-index per kind.
    boundaries = np.flatnonzero(np.diff(series_idx)) + 1
    for group in np.split(np.arange(n), boundaries):
        if group.size == 0:
            continue
        s = rows[series_idx[group[0]]]
        o = origin[group]
        y[group] = s[o[:, None] + target_offsets]
        full = o >= input_size
        if full.any():
            x[group[full]] = s[o[full, None] + offsets]
        for j in np.flatnonzero(~full):
            t = int(o[j])
            x[group[j]] = s[:t][_tile_index(t, input_size)]
    return x, y
