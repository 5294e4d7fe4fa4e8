"""Experiment 1: daily invocation patterns clustered by shape into K data-driven patterns.

`cluster_days` is the entry point: it sets idle/constant days aside (label -1), picks K by the
silhouette of K-Shape fits (`choose_k`) when K is not given, fits K-Shape and describes each
cluster in words (`describe_centroid`: "timer every 30 min", "diurnal, peak 12-16h", ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.forecasting.kshape import EmptyClusterError, KShape
from mesp_core.forecasting.sbd import (
    FLOAT64_MAX_VALUES,
    _as_series_matrix,
    _fft_length,
    _pairwise_sbd,
    is_flat,
    serial,
    znormalize,
)


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
    with serial():
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
    Z = znormalize(days[live_idx]).astype(np.float32 if n_live * MINUTES_PER_DAY > FLOAT64_MAX_VALUES else np.float64)

    silhouette: dict[int, float] = {}
    if k is None:
        k, silhouette = choose_k(Z, k_range, sample=silhouette_sample, random_state=random_state, progress=progress, max_iter=max_iter)
    elif k > n_live:
        raise ValueError(f"k={k} clusters need at least {k} non-flat days, got {n_live}")

    model = KShape(int(k), max_iter=max_iter, random_state=random_state, n_init=n_init)
    fit_with_progress(model, Z, f"K-Shape k={k} on {n_live} days", progress)

    labels = np.full(len(days), -1, dtype=np.int64)
    labels[live_idx] = model.labels_
    if not silhouette:
        silhouette = fitted_silhouette(int(k), labels, live_idx, lambda rows: days[rows], silhouette_sample,
                                       random_state)
    centroids = model.cluster_centers_[:, :, 0].astype(np.float32)
    descriptions = [describe_centroid(centroids[j], days[labels == j]) for j in range(int(k))]
    return clustering_result(model, labels, centroids, descriptions, silhouette)


def fit_with_progress(model, data, desc: str, progress: bool) -> None:
    """model.fit(data) with a progress bar over its iterations (K-Shape, in process or sharded)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=model.max_iter * model.n_init, desc=desc, unit="it")
        model.iteration_callback = lambda it, inertia: (bar.update(1), bar.set_postfix(inertia=f"{inertia:.4f}"))
    try:
        model.fit(data)
    finally:
        if bar is not None:
            bar.close()


def fitted_silhouette(k: int, labels: np.ndarray, live_idx: np.ndarray, rows_of, silhouette_sample: int,
                      random_state) -> dict[int, float]:
    """{k: silhouette} of a fit whose K was given (choose_k scores its own), on a seeded sample of
    the live days; `rows_of(indices)` returns those days' raw rows."""
    if k < 2:
        return {}
    sample = live_idx
    if len(live_idx) > silhouette_sample:
        sample = np.sort(np.random.RandomState(random_state).choice(live_idx, silhouette_sample, replace=False))
    score = _silhouette(_pairwise_sbd(znormalize(rows_of(sample))), labels[sample])
    return {k: round(score, 6)} if np.isfinite(score) else {}


def clustering_result(model, labels, centroids, descriptions, silhouette) -> ClusteringResult:
    return ClusteringResult(k=int(model.n_clusters), labels=labels, centroids=centroids, descriptions=descriptions,
                            silhouette=silhouette, inertia=float(model.inertia_), n_iter=int(model.n_iter_))
