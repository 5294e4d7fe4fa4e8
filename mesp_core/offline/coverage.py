"""How well a count forecast's quantiles cover: at or below, strictly below, and randomized PIT.

Invocation counts are whole numbers and about half of all minutes are 0, which a forecast clipped at
0 always "covers": with the plain share of minutes at or below the q-quantile, no non-negative
forecast covers fewer minutes than are 0 (55% on the shared sample's validation functions even at
q = 0.01), so a 0.5 quantile can never show 50% there. The randomized PIT of count data (Czado,
Gneiting & Held 2009) handles that: a minute whose count y sits where the forecast distribution is
flat at y counts as covered at level q with probability (q - F(y-)) / (F(y) - F(y-)), any other
minute as usual. A calibrated forecaster has exactly q of it; its share at or below lies at or above
q and its share strictly below at or below q (the bracket a quantile of a whole number sits in).
`mesp calibrate` fits on it and `mesp evaluate` reports all three.
"""

from __future__ import annotations

import numpy as np

REPORT_LEVELS = (0.5, 0.8, 0.9, 0.95)
GRID_STEP = 0.005
# Levels the coverage curve is measured at: 0.005 ... 0.995.
MEASURE_GRID = np.round(np.arange(1, round(1 / GRID_STEP)) * GRID_STEP, 6)


class CoverageSamples:
    """Where each actual count fell in its forecast distribution, measured on MEASURE_GRID.

    n_above[i, h]: grid levels whose quantile is below the count; n_reached[i, h]: grid levels whose
    quantile is at most the count. The count is covered at grid index g when g >= n_above."""

    def __init__(self, n_above: np.ndarray, n_reached: np.ndarray, keys: np.ndarray):
        self.n_above = np.asarray(n_above, dtype=np.int16)
        self.n_reached = np.asarray(n_reached, dtype=np.int16)
        self.keys = np.asarray(keys, dtype=object)

    @classmethod
    def measure(cls, distribution, actual: np.ndarray) -> "CoverageSamples":
        """Count, per forecast minute, the grid quantiles of `distribution` below / at most `actual`."""
        actual = np.asarray(actual, dtype=np.float32)
        horizon = actual.shape[1]
        n_above = np.zeros(actual.shape, dtype=np.int16)
        n_reached = np.zeros(actual.shape, dtype=np.int16)
        for q in MEASURE_GRID:
            upper = distribution.quantile(float(q))[:, :horizon]
            n_above += actual > upper + 1e-6   # the replay's own tolerance (mesp_core.replay.simulate)
            n_reached += upper <= actual + 1e-6
        return cls(n_above, n_reached, distribution.group_keys())

    @classmethod
    def concatenate(cls, parts: list["CoverageSamples"]) -> "CoverageSamples":
        return cls(np.concatenate([p.n_above for p in parts]), np.concatenate([p.n_reached for p in parts]),
                   np.concatenate([p.keys for p in parts]))

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, rows) -> "CoverageSamples":
        return CoverageSamples(self.n_above[rows], self.n_reached[rows], self.keys[rows])

    def _index(self, q: float) -> int:
        index = int(round(q / GRID_STEP)) - 1
        if not 0 <= index < len(MEASURE_GRID) or abs(MEASURE_GRID[index] - q) > 1e-9:
            raise ValueError(f"level {q} is not on the measuring grid (multiples of {GRID_STEP})")
        return index

    def at_or_below(self, q: float) -> float:
        """Share of minutes whose count stayed at or below the q-quantile (the replay's coverage)."""
        return float((self._index(q) >= self.n_above).mean()) if len(self) else float("nan")

    def below(self, q: float) -> float:
        """Share of minutes whose count stayed strictly below the q-quantile."""
        return float((self._index(q) >= self.n_reached).mean()) if len(self) else float("nan")

    def pit_curve(self) -> np.ndarray:
        """Randomized-PIT coverage at every MEASURE_GRID level (non-decreasing)."""
        if not len(self):
            return np.full(len(MEASURE_GRID), np.nan)
        # F(y-) and F(y) of each count, half a grid step inside the levels that bracket them.
        low = (self.n_above.astype(np.float64) + 0.5) * GRID_STEP
        high = np.maximum((self.n_reached.astype(np.float64) + 0.5) * GRID_STEP, low)
        width = high - low
        low, width = low.ravel(), width.ravel()
        flat = width <= 0
        # Each count's PIT is uniform on [low, high] (a point where the distribution is not flat at
        # the count): the curve is the mean of their CDFs at every grid level.
        curve = np.empty(len(MEASURE_GRID))
        for g, q in enumerate(MEASURE_GRID):
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(flat, q >= low, np.clip((q - low) / np.where(flat, 1.0, width), 0.0, 1.0))
            curve[g] = share.mean()
        return np.maximum.accumulate(curve)

    def at_or_below_curve(self) -> np.ndarray:
        """Share of minutes at or below the quantile at every MEASURE_GRID level (non-decreasing)."""
        if not len(self):
            return np.full(len(MEASURE_GRID), np.nan)
        return np.array([(g >= self.n_above).mean() for g in range(len(MEASURE_GRID))])

    def curve(self, target: str) -> np.ndarray:
        return self.pit_curve() if target == "pit" else self.at_or_below_curve()

    def pit(self, q: float) -> float:
        """Randomized-PIT coverage at level q (the quantity the maps are fitted on)."""
        return float(self.pit_curve()[self._index(q)])

    def summary(self, levels=REPORT_LEVELS) -> dict:
        curve = self.pit_curve()
        return {"n_minutes": int(self.n_above.size),
                **{f"{q:g}": {"pit": float(curve[self._index(q)]), "at_or_below": self.at_or_below(q),
                              "below": self.below(q)} for q in levels}}
