"""A forecast with its uncertainty: the point forecast of a batch and what turns it into quantiles.

`ForecastDistribution` is what `MespModel.forecast_distribution` returns: one model run from which
any number of quantiles is derived (the replay and the operator ask for several). `RecentHour` holds
each function's forecast of its own last hour from the minutes before it: its errors drive the
recent-error check, and its residuals give the function's own (local conformal) quantiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mesp_core.forecasting.calibration import CALIBRATED_APPROACH

if TYPE_CHECKING:  # the model hands itself in; importing it here would be a cycle
    from mesp_core.forecasting.model import MespModel

class RecentHour:
    """Forecasts of each function's last hour made from the minutes before it (its own errors)."""

    def __init__(self, n: int, usable: np.ndarray, actual: np.ndarray, model_past: np.ndarray, alt_past: np.ndarray):
        self.n = n
        self.usable = usable
        self.actual = actual
        self.model_past = model_past
        self.alt_past = alt_past

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean absolute error per function of the model and of repeat-last-hour (NaN: too short)."""
        model_err = np.full(self.n, np.nan)
        alt_err = np.full(self.n, np.nan)
        model_err[self.usable] = np.abs(self.model_past - self.actual).mean(axis=1)
        alt_err[self.usable] = np.abs(self.alt_past - self.actual).mean(axis=1)
        return model_err, alt_err

    def switch(self, ratio: float) -> np.ndarray:
        """Functions whose model did clearly worse than repeat-last-hour: error < ratio * model's."""
        model_err, alt_err = self.errors()
        with np.errstate(invalid="ignore"):
            return alt_err < ratio * model_err  # NaN (short context) compares False: keep the expert

    def residuals(self, switched: np.ndarray) -> np.ndarray:
        """actual - forecast [n, window] of whichever forecaster each row uses; NaN rows: too short."""
        out = np.full((self.n, self.actual.shape[1]), np.nan, dtype=np.float32)
        use_alt = switched[self.usable][:, None]
        out[self.usable] = self.actual - np.where(use_alt, self.alt_past, self.model_past)
        return out


def interp_columns(x: float, xp: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`np.interp(x, xp, table[:, j])` for every column j of a finite table at once, with numpy's own
    arithmetic (the same float64 results; the replay asks for a quantile every minute)."""
    fp = np.asarray(table, dtype=np.float64)
    xp = np.asarray(xp, dtype=np.float64)
    if x < xp[0]:
        return fp[0].copy()
    if x >= xp[-1]:
        return fp[-1].copy()
    j = int(np.searchsorted(xp, x, side="right")) - 1
    if x == xp[j]:
        return fp[j].copy()
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    return slope * (x - xp[j]) + fp[j]



class ForecastDistribution:
    """A batch's point forecast and, per row, the residual table that turns it into quantiles.

    `switched[i]` is True where the recent-error check replaced the routed expert by repeat-last-hour.
    """

    def __init__(self, model: "MespModel", point: np.ndarray, scale: np.ndarray, groups: list[tuple[str, np.ndarray]],
                 switched: np.ndarray | None = None, *, rows: np.ndarray | list[np.ndarray] | None = None,
                 approach: str = "moe", recent: RecentHour | None = None, clusters: np.ndarray | None = None):
        self.point = np.clip(point, 0.0, None)
        self._model = model
        self._scale = scale
        self._groups = groups
        self.switched = np.zeros(len(point), dtype=bool) if switched is None else switched
        self._rows = rows
        self._approach = approach
        self._recent = recent
        self._clusters = clusters
        self._local: np.ndarray | None = None

    def local_residuals(self) -> np.ndarray | None:
        """The function's own last-hour residuals [n, 60] (NaN rows: context too short), or None
        when the distribution was built without its contexts."""
        if self._local is None and self._rows is not None:
            recent = self._recent
            if recent is None:
                recent = self._model._recent_hour(self._rows, self._approach, self._clusters)
            self._local = recent.residuals(self.switched)
        return self._local

    def quantile(self, q: float) -> np.ndarray:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        out = self.point.copy()
        horizon = out.shape[1]
        # Functions with an hour of their own recent errors are sized from those (local conformal):
        # a shared table scaled by level is far too wide for steady functions and too narrow for
        # jumpy ones. The others keep the per-cluster validation table.
        local = self.local_residuals()
        for key, members in self._groups:
            level = self.level(key, q)
            residual = self._model._residual_quantile(key, level, horizon)
            out[members] = self.point[members] + self._scale[members, None] * residual[None, :]
            if local is not None:
                own = members[~np.isnan(local[members, 0])]
                if own.size:
                    out[own] = self.point[own] + np.quantile(local[own], level, axis=1)[:, None]
        return np.clip(out, 0.0, None)

    def level(self, key: str, q: float) -> float:
        """The level group `key` is read at for nominal q: the model's calibration map for the
        mixture's groups (mesp_core.forecasting.calibration), q itself otherwise."""
        calibration = getattr(self._model, "quantile_calibration", None)
        if calibration is None or self._approach != CALIBRATED_APPROACH:
            return q
        return calibration.level(key, q)

    def group_keys(self) -> np.ndarray:
        """The residual group key of every row ("cluster-3", "repeat_last_hour", ...)."""
        keys = np.empty(len(self.point), dtype=object)
        for key, members in self._groups:
            keys[members] = key
        return keys
