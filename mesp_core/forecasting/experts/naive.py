"""Non-trainable experts: seasonal naive (the floor and fallback) and repeat-last-hour.

Seasonal naive picks, per context, the candidate period whose seasonal-naive rule would have had the
lowest squared error over the next ``horizon`` minutes inside the context itself. Those errors come
from the context's autocorrelation: mean((x_t - x_{t-k})^2) = mean(x_t^2) + mean(x_{t-k}^2)
- 2 mean(x_t x_{t-k}), with the lag products of all short lags from one batched FFT and the few long
candidate lags (e.g. a day) computed directly. A flat forecast at the last-hour mean competes too;
it wins on aperiodic, noisy series. Ties go to the shortest period (a 15-minute timer also repeats
every 30 and 60 minutes).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from mesp_core.constants import DEFAULT_HORIZON
from mesp_core.forecasting.experts.base import Expert, _positive_int
from mesp_core.forecasting.fftsize import fast_fft_length
from mesp_core.data.windows import WindowSet, _as_float_1d, prepare_contexts, validate_counts

__all__ = ["SeasonalNaive", "RepeatLastHour", "detect_periods", "DEFAULT_PERIOD_CANDIDATES", "APERIODIC"]

# A week (10080) counts only where the context holds 8 days (see _enough_history); with the
# default 2-day input it is never feasible, so such models forecast exactly as without it.
DEFAULT_PERIOD_CANDIDATES = (1, 2, 5, 10, 15, 30, 60, 120, 1440, 10080)
APERIODIC = 0  # detect_periods code for "no period: flat forecast at the recent mean"
# Short lags are estimated on the most recent day only: it keeps the FFT small and recent.
_FFT_SPAN = 1440
_ROW_CHUNK = 1024
_PAIRS_ENOUGH = 1440  # lag pairs that always suffice to judge a period


def _lags_for(period: int, horizon: int) -> np.ndarray:
    """Lag used for each horizon step h=1..H by the seasonal-naive rule with this period."""
    h = np.arange(1, horizon + 1)
    return period * np.ceil(h / period).astype(np.int64)


def _enough_history(length: np.ndarray, max_lag: int) -> np.ndarray:
    # At least an hour of lag pairs, and at least half the lag (so a daily period needs 1.5 days),
    # but never more than a day of pairs (so a weekly period needs 8 days, not 10.5).
    return length - max_lag >= max(60, min(max_lag // 2, _PAIRS_ENOUGH))




def _period_errors(
    x: np.ndarray, lengths: np.ndarray, horizon: int, candidates: Sequence[int], mean_window: int
) -> np.ndarray:
    """Expected squared error per option, [n, len(candidates) + 1] (last column: recent mean); inf = too short."""
    n_rows, width = x.shape
    cand = list(candidates)
    # Lags up to a quarter day come from one FFT over the recent span; longer ones are computed directly.
    short_max = max(
        [horizon + mean_window - 1]
        + [int(_lags_for(p, horizon).max()) for p in cand if p < horizon]
        + [p for p in cand if p <= _FFT_SPAN // 4]
    )
    span = min(width, _FFT_SPAN)
    span_len = np.minimum(lengths, span)
    xf = x[:, width - span :]
    # Lag products A[k] = sum_t x_t x_{t-k} over the valid (non-zero-padded) part, k = 0..short_max.
    nfft = fast_fft_length(span + short_max + 1)
    xf = np.ascontiguousarray(xf, dtype=np.float64)
    spec = np.fft.rfft(xf, nfft, axis=1)
    lag_products = np.fft.irfft(spec.real**2 + spec.imag**2, nfft, axis=1)[:, : short_max + 1]
    csum = np.zeros((n_rows, span + 1))
    np.cumsum(xf * xf, axis=1, out=csum[:, 1:])
    k = np.arange(short_max + 1)
    start = (span - span_len)[:, None]
    pairs = span_len[:, None] - k[None, :]
    ok = pairs > 0
    # Sum of x_t^2 over the later and the earlier member of each lag pair.
    later = csum[:, span][:, None] - np.take_along_axis(csum, np.minimum(start + k, span), axis=1)
    earlier = csum[:, np.clip(span - k, 0, span)] - csum[np.arange(n_rows), start[:, 0]][:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        sq_diff = np.where(ok, (later + earlier - 2 * lag_products) / pairs, np.inf)
        moment = np.where(ok, lag_products / pairs, np.nan)
    sq_diff = np.maximum(sq_diff, 0.0)

    errors = np.full((n_rows, len(cand) + 1), np.inf)
    for j, p in enumerate(cand):
        if p < horizon:
            lags = _lags_for(p, horizon)
            feasible = _enough_history(span_len, int(lags.max()))
            err = sq_diff[:, lags].mean(axis=1)
        elif p <= short_max:
            feasible = _enough_history(span_len, p)
            err = sq_diff[:, p]
        else:
            feasible = _enough_history(lengths, p) & (p < width)
            err = np.full(n_rows, np.inf)
            if feasible.any():
                err[feasible] = _long_lag_sq_diff(x, lengths, p, np.flatnonzero(feasible))
        errors[:, j] = np.where(feasible, err, np.inf)

    # Flat forecast at the mean m_t of the last `mean_window` minutes, error at steps h=1..H:
    # E(x_{t+h} - m_t)^2 = R0 - 2/W sum_j R(h+j) + 1/W^2 sum_d (W-|d|) R(|d|), with R the lag moments.
    # Both sums are fixed linear forms in R, so each is one matrix-vector product.
    w = mean_window
    lag = np.arange(horizon + w)
    h = np.arange(1, horizon + 1)[:, None]
    cross_weights = ((lag[None, :] >= h) & (lag[None, :] < h + w)).sum(axis=0) / horizon
    cross = moment[:, : horizon + w] @ cross_weights
    level_weights = np.where(lag[:w] == 0, w, 2.0 * (w - lag[:w])) / w**2  # d and -d share R(|d|)
    level = moment[:, :w] @ level_weights
    mean_err = moment[:, 0] - 2.0 * cross / w + level
    feasible = _enough_history(span_len, horizon + w - 1)
    errors[:, -1] = np.where(feasible, np.maximum(mean_err, 0.0), np.inf)
    return errors


def _long_lag_sq_diff(x: np.ndarray, lengths: np.ndarray, lag: int, rows: np.ndarray) -> np.ndarray:
    """mean((x_t - x_{t-lag})^2) over the valid part of the selected rows (x is zero-padded on the left)."""
    width = x.shape[1]
    sub = x[rows]
    diff_sq = ((sub[:, lag:] - sub[:, :-lag]) ** 2).sum(axis=1)
    # Pairs whose earlier member lies in the zero padding contributed x_t^2 for t in
    # [max(start, lag), start + lag); take them out (a gather of at most `lag` minutes per row).
    start = width - lengths[rows]
    t = start[:, None] + np.arange(lag)[None, :]
    inside = (t >= lag) & (t < width)
    spurious = np.where(inside, np.take_along_axis(sub, np.minimum(t, width - 1), axis=1) ** 2, 0.0).sum(axis=1)
    return (diff_sq - spurious) / (lengths[rows] - lag)


def _right_aligned(contexts, input_size: int, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Contexts cut to at most ``input_size`` minutes, right-aligned with zeros before each true start.

    The width is the longest true length (capped at ``input_size``): padding beyond it carries no
    information for the period search and would only cost time.
    """
    if isinstance(contexts, np.ndarray) and contexts.ndim == 2:
        arr = prepare_contexts(contexts, min(input_size, contexts.shape[1]))  # validates
        true_len = np.full(arr.shape[0], contexts.shape[1], dtype=np.int64)
        if lengths is not None:
            true_len = _check_lengths(lengths, true_len)
        width = arr.shape[1] if true_len.size == 0 else int(min(arr.shape[1], true_len.max()))
        x = np.ascontiguousarray(arr[:, arr.shape[1] - width :])
        length = np.minimum(true_len, width)
        short = np.flatnonzero(length < width)
        if short.size:
            x[short] = np.where(np.arange(width)[None, :] < (width - length[short])[:, None], 0.0, x[short])
        return x, length
    if isinstance(contexts, np.ndarray) and contexts.dtype != object:
        prepare_contexts(contexts, input_size)  # raises the shape error
    if isinstance(contexts, (str, bytes)) or not hasattr(contexts, "__iter__"):
        prepare_contexts(contexts, input_size)
    rows = [_as_float_1d(row, f"context {i}") for i, row in enumerate(contexts)]
    true_len = np.array([r.shape[0] for r in rows], dtype=np.int64)
    if (true_len == 0).any():
        raise ValueError(f"context {int(np.argmax(true_len == 0))} has 0 minutes; at least 1 are needed")
    if rows:
        joined = np.concatenate(rows)
        if not np.isfinite(joined).all() or (joined < 0).any():
            for i, row in enumerate(rows):
                validate_counts(row, f"context {i}")
    if lengths is not None:
        true_len = _check_lengths(lengths, true_len)
    width = int(min(input_size, true_len.max())) if rows else 1
    x = np.zeros((len(rows), width), dtype=np.float32)
    length = np.minimum(true_len, width)
    for i, row in enumerate(rows):
        x[i, width - length[i] :] = row[row.shape[0] - length[i] :]
    return x, length


def _check_lengths(lengths, widths: np.ndarray) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.shape != widths.shape or not np.issubdtype(lengths.dtype, np.integer) or (lengths < 1).any():
        raise ValueError(f"lengths must be {widths.shape[0]} positive integers (one per context)")
    if (lengths > widths).any():
        raise ValueError("lengths exceed the contexts' widths")
    return lengths.astype(np.int64)


class _NonTrainable(Expert):
    trainable: ClassVar[bool] = False

    def fit(self, train: WindowSet, val: WindowSet | None = None, *, max_seconds=None, progress=None, init_from=None):
        """Nothing to learn; kept so every expert is trained the same way."""
        return self


class SeasonalNaive(_NonTrainable):
    """Repeat the context's own dominant period (or its last-hour mean when it has none).

    ``predict(contexts, lengths=None)``: pass raw contexts (a list of 1-D arrays, or a 2-D array
    all of whose minutes are real) so the period search ignores padding; ``lengths`` gives the true
    lengths of already left-padded rows.
    """

    family: ClassVar[str] = "seasonal_naive"
    default_input_size: ClassVar[int] = 2880

    @classmethod
    def default_hyperparams(cls) -> dict[str, Any]:
        return {"candidates": list(DEFAULT_PERIOD_CANDIDATES), "mean_window": 60, "rtol": 0.02}

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        cands = hp["candidates"]
        if isinstance(cands, (str, bytes)) or not hasattr(cands, "__iter__"):
            raise ValueError(f"candidates must be a list of positive integers, got {cands!r}")
        hp["candidates"] = sorted({_positive_int("candidate period", c) for c in cands})
        if not hp["candidates"]:
            raise ValueError("candidates must name at least one period")
        hp["mean_window"] = _positive_int("mean_window", hp["mean_window"])
        rtol = hp["rtol"]
        if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating)) or not 0 <= rtol < 1:
            raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
        hp["rtol"] = float(rtol)

    def detect(self, contexts, lengths=None) -> np.ndarray:
        """Detected period per context (``APERIODIC`` = 0 for the flat recent-mean forecast)."""
        x, length = _right_aligned(contexts, self.input_size, lengths)
        return self._detect(x, length)

    def _detect(self, x: np.ndarray, length: np.ndarray) -> np.ndarray:
        hp = self.hyperparams
        options = np.array(hp["candidates"] + [APERIODIC])
        out = np.empty(x.shape[0], dtype=np.int64)
        for lo in range(0, x.shape[0], _ROW_CHUNK):
            sl = slice(lo, lo + _ROW_CHUNK)
            chunk = x[sl].astype(np.float64)
            errors = _period_errors(chunk, length[sl], self.horizon, hp["candidates"], hp["mean_window"])
            best = errors.min(axis=1)
            # Ties within rtol (plus rounding noise) go to the first option: the shortest period.
            energy = np.einsum("ij,ij->i", chunk, chunk) / np.maximum(length[sl], 1)
            close = errors <= (best * (1 + hp["rtol"]) + 1e-9 * energy)[:, None]
            choice = np.where(np.isfinite(best), close.argmax(axis=1), len(options) - 1)
            out[sl] = options[choice]
        return out

    def predict(self, contexts, lengths=None) -> np.ndarray:
        x, length = _right_aligned(contexts, self.input_size, lengths)
        n, width = x.shape
        if n == 0:
            return np.zeros((0, self.horizon), dtype=np.float32)
        periods = self._detect(x, length)
        h = np.arange(self.horizon)
        safe = np.maximum(periods, 1)[:, None]
        lag = safe * ((h[None, :] // safe) + 1)  # p * ceil((h+1)/p)
        idx = np.clip(width + h[None, :] - lag, 0, width - 1)
        out = np.take_along_axis(x, idx, axis=1)
        flat = periods == APERIODIC
        if flat.any():
            # The padding is zero, so summing the last mean_window columns sums the real minutes.
            window = self.hyperparams["mean_window"]
            recent = x[flat][:, max(0, width - window) :].astype(np.float64).sum(axis=1)
            out[flat] = (recent / np.minimum(length[flat], window))[:, None]
        return np.maximum(out, 0.0).astype(np.float32)


class RepeatLastHour(_NonTrainable):
    """Forecast minute h as the count at the same minute of the last hour (period 60)."""

    family: ClassVar[str] = "repeat_last_hour"
    default_input_size: ClassVar[int] = 60
    PERIOD: ClassVar[int] = 60

    def __init__(self, horizon: int = DEFAULT_HORIZON, input_size: int | None = None, **hyperparams):
        super().__init__(horizon=horizon, input_size=input_size, **hyperparams)
        if self.input_size < self.PERIOD:
            raise ValueError(f"repeat_last_hour needs input_size >= {self.PERIOD}, got {self.input_size}")

    def predict(self, contexts) -> np.ndarray:
        x = self._contexts(contexts)
        width = x.shape[1]
        idx = width - self.PERIOD + (np.arange(self.horizon) % self.PERIOD)
        return np.maximum(x[:, idx], 0.0).astype(np.float32)


def detect_periods(
    contexts,
    horizon: int = DEFAULT_HORIZON,
    candidates: Sequence[int] = DEFAULT_PERIOD_CANDIDATES,
    input_size: int = 2880,
    lengths=None,
) -> np.ndarray:
    """Dominant period per context among ``candidates`` (``APERIODIC`` = 0 when none beats the recent mean)."""
    return SeasonalNaive(horizon=horizon, input_size=input_size, candidates=list(candidates)).detect(contexts, lengths)
