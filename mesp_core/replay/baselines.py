"""The policies MESP is compared with: fixed keep-alive, the hybrid histogram policy, the oracle.

All of them are `mesp_core.replay.policies.Policy` objects. The keep-alive and histogram policies react to
what happened up to the previous minute and decide every minute (as the platforms do); they never
see the future. The oracle does, on purpose: it is the lower bound.
"""

from __future__ import annotations

import numpy as np

from mesp_core.checks import check_int, check_number
from mesp_core.replay.policies import Policy, demand_instances


class FixedKeepAlivePolicy(Policy):
    """Keep every instance warm for `minutes` after the last minute it was needed.

    AWS Lambda keeps functions loaded ~10 minutes after an execution, Azure Functions 20 (Shahrad et
    al., ATC 2020). The floor at minute t is the peak demand over [t - minutes, t - 1].
    """

    cadence = 1

    def __init__(self, minutes: int):
        check_int("keep-alive minutes", minutes, low=1)
        self.minutes = minutes

    def reset(self, settings):
        self._capacity = settings.capacity_column

    def plan(self, step):
        recent = step.history[:, max(0, step.t - self.minutes):]
        peak = demand_instances(recent, self._capacity).max(axis=1, initial=0)
        return np.repeat(peak[:, None], step.steps, axis=1)


class HybridHistogramPolicy(Policy):
    """The hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC 2020).

    Per function, a histogram of idle times (minutes between two busy minutes; 1-minute bins up to
    `range_minutes`, 4 hours). After each busy minute the function is unloaded, re-loaded (pre-warmed)
    at the `head_percentile` of the idle-time distribution minus `margin`, and kept until its
    `tail_percentile` plus `margin`. When the histogram cannot be trusted the policy falls back to a
    fixed keep-alive of `fallback_keep_alive_minutes` (the paper uses the histogram range):
    fewer than `min_samples` idle times, a flat histogram (coefficient of variation of the bin counts
    at most `cv_threshold`), or more than `max_out_of_bounds` of the idle times beyond the range
    (where the paper switches to an ARIMA forecast of the next idle time, outside this baseline).
    The paper decides whether a function is loaded at all; with several instances per function the
    number kept is the peak demand over the window's length before now (like fixed keep-alive,
    which keeps the peak of its window), at least the last busy minute's demand. Pre-warming is
    asked for `lead_minutes` early so the instance is ready when the window opens.
    """

    cadence = 1

    def __init__(self, range_minutes: int = 240, head_percentile: float = 5.0, tail_percentile: float = 99.0,
                 margin: float = 0.10, cv_threshold: float = 2.0, min_samples: int = 10,
                 max_out_of_bounds: float = 0.5, fallback_keep_alive_minutes: int | None = None):
        check_int("range_minutes", range_minutes, low=2)
        check_number("head_percentile", head_percentile, low=0.0)
        check_number("tail_percentile", tail_percentile, low=0.0)
        if not head_percentile < tail_percentile <= 100.0:
            raise ValueError(f"need 0 <= head_percentile < tail_percentile <= 100, got "
                             f"{head_percentile}, {tail_percentile}")
        check_number("margin", margin, low=0.0)
        if margin >= 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        check_number("cv_threshold", cv_threshold, low=0.0)
        check_int("min_samples", min_samples, low=1)
        check_number("max_out_of_bounds", max_out_of_bounds, low=0.0)
        if fallback_keep_alive_minutes is None:
            fallback_keep_alive_minutes = range_minutes
        check_int("fallback_keep_alive_minutes", fallback_keep_alive_minutes, low=1)
        self.range_minutes = range_minutes
        self.head_percentile = head_percentile
        self.tail_percentile = tail_percentile
        self.margin = margin
        self.cv_threshold = cv_threshold
        self.min_samples = min_samples
        self.max_out_of_bounds = max_out_of_bounds
        self.fallback_keep_alive_minutes = fallback_keep_alive_minutes

    def reset(self, settings):
        n = settings.n_functions
        self._capacity = settings.capacity_column
        self._lead = settings.lead_minutes
        self._seen = 0                                    # minutes ingested so far
        self._last_busy = np.full(n, -1, dtype=np.int64)  # last minute with an invocation
        self._last_demand = np.zeros(n, dtype=np.int64)
        self._hist = np.zeros((n, self.range_minutes), dtype=np.int64)
        self._out_of_bounds = np.zeros(n, dtype=np.int64)
        # Window [prewarm, window_end) in idle minutes after the last busy minute; fallback until trusted.
        self._prewarm = np.zeros(n, dtype=np.int64)
        self._window_end = np.full(n, self.fallback_keep_alive_minutes, dtype=np.int64)
        self.uses_histogram = np.zeros(n, dtype=bool)

    def _ingest(self, history: np.ndarray, upto: int):
        for m in range(self._seen, upto):
            busy = history[:, m] > 0
            if not busy.any():
                continue
            seen_before = busy & (self._last_busy >= 0)
            rows = np.nonzero(seen_before)[0]
            idle = m - self._last_busy[rows] - 1
            inside = idle < self.range_minutes
            np.add.at(self._hist, (rows[inside], idle[inside]), 1)
            self._out_of_bounds[rows[~inside]] += 1
            self._last_busy[busy] = m
            self._last_demand[busy] = demand_instances(history[busy, m], self._capacity[busy, 0])
            if rows.size:
                self._update_windows(rows)
        self._seen = max(self._seen, upto)

    def _update_windows(self, rows: np.ndarray):
        hist = self._hist[rows]
        samples = hist.sum(axis=1)
        oob = self._out_of_bounds[rows]
        mean = hist.mean(axis=1)
        cv = np.divide(hist.std(axis=1), mean, out=np.zeros_like(mean, dtype=np.float64), where=mean > 0)
        trusted = ((samples >= self.min_samples) & (cv > self.cv_threshold)
                   & (oob <= self.max_out_of_bounds * np.maximum(samples + oob, 1)))
        cum = np.cumsum(hist, axis=1)
        head_bin = np.argmax(cum >= (self.head_percentile / 100.0) * samples[:, None], axis=1)
        tail_bin = np.argmax(cum >= (self.tail_percentile / 100.0) * samples[:, None], axis=1)
        # Bin b holds idle times in [b, b + 1) minutes: pre-warm from the head bin's start, keep to the
        # tail bin's end, each widened by the margin.
        prewarm = np.floor(head_bin * (1.0 - self.margin)).astype(np.int64)
        window_end = np.ceil((tail_bin + 1) * (1.0 + self.margin)).astype(np.int64)
        self._prewarm[rows] = np.where(trusted, prewarm, 0)
        self._window_end[rows] = np.where(trusted, np.maximum(window_end, prewarm + 1),
                                          self.fallback_keep_alive_minutes)
        self.uses_histogram[rows] = trusted

    def plan(self, step):
        self._ingest(step.history, step.t)
        n = step.history.shape[0]
        out = np.zeros((n, step.steps), dtype=np.int64)
        known = self._last_busy >= 0
        keep = self._last_demand.copy()
        # Peak demand over each function's own window length before now (no more than the range).
        reach = int(min(self._window_end.max(initial=1), step.t))
        recent = demand_instances(step.history[:, step.t - reach:], self._capacity)
        age = np.arange(reach, 0, -1)[None, :]  # minutes before now of each column
        in_window = age <= self._window_end[:, None]
        keep = np.maximum(keep, np.where(in_window, recent, 0).max(axis=1, initial=0))
        for i in range(step.steps):
            idle_minutes = step.t + i - self._last_busy - 1
            # Ask `lead` minutes before the window opens so the instance is ready at its start.
            on = known & (idle_minutes >= self._prewarm - self._lead) & (idle_minutes < self._window_end)
            out[:, i] = np.where(on, keep, 0)
        return out


class OraclePolicy(Policy):
    """Knows the future: asks for exactly the demand `lead` minutes ahead (the lower bound)."""

    sees_future = True
    cadence = 1

    def reset(self, settings):
        self._capacity = settings.capacity_column
        self._lead = settings.lead_minutes

    def plan(self, step):
        if step.future is None:
            raise ValueError("the oracle needs the future trace (PlanningStep.future)")
        t, lead, steps = step.t, self._lead, step.steps
        stop = min(step.future.shape[1], t + steps + lead)
        demand = demand_instances(step.future[:, t:stop], self._capacity)
        n = demand.shape[0]
        out = np.zeros((n, steps), dtype=np.int64)
        for i in range(steps):
            window = demand[:, i: i + lead + 1]
            out[:, i] = window.max(axis=1, initial=0)
        return out
