"""Per-cluster recalibration of the experts' quantiles: nominal level -> the level that delivers it.

The experts' quantiles (a function's own last-hour residuals, or its cluster's validation table)
are not calibrated as they come: on the validation functions of the shared sample the 0.5 quantile
covered 74% of minutes and the 0.95 quantile 93%. `mesp calibrate` (mesp_core.offline.calibration)
measures, per residual group ("cluster-3", "repeat_last_hour", ...), how often the actual count
stayed under the q'-quantile for a grid of q', and stores the monotone inverse: the level q' whose
coverage on validation functions is the nominal q. `ForecastDistribution.quantile(q)` then reads
each group's quantile at `level(key, q)`. Point forecasts are untouched.

Manifest section "quantile_calibration" (version 1):
    {"version": 1, "approach": "moe", "levels": [0.01, ..., 0.99],
     "maps": {"cluster-0": [q' for each level], ...}, ...fit details...}
Levels outside the stored grid interpolate towards (0, 0) and (1, 1); groups without a map keep
their nominal level. A model without the section is uncalibrated (identity).
"""

from __future__ import annotations

import numpy as np

from mesp_core.forecasting.artifact import ArtifactError

CALIBRATION_SECTION = "quantile_calibration"
CALIBRATION_VERSION = 1
# The approach whose quantiles a map applies to: the maps are fitted on the mixture's own groups
# (its "naive" group holds idle-routed functions only, not the naive approach's every function).
CALIBRATED_APPROACH = "moe"


class QuantileCalibration:
    """Monotone maps nominal level -> used level, one per residual group key."""

    def __init__(self, levels, maps: dict[str, np.ndarray]):
        levels = np.asarray(levels, dtype=np.float64)
        if levels.ndim != 1 or levels.size < 2 or not np.all(np.isfinite(levels)):
            raise ValueError("levels must be a list of at least two finite numbers")
        if levels[0] <= 0.0 or levels[-1] >= 1.0 or np.any(np.diff(levels) <= 0):
            raise ValueError("levels must increase strictly inside (0, 1)")
        checked = {}
        for key, values in maps.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != levels.shape:
                raise ValueError(f"map {key!r} has {values.size} values for {levels.size} levels")
            if not np.all(np.isfinite(values)) or values.min() <= 0.0 or values.max() >= 1.0:
                raise ValueError(f"map {key!r} has levels outside (0, 1)")
            if np.any(np.diff(values) < 0):
                raise ValueError(f"map {key!r} is not monotone (a higher nominal level must not give a lower quantile)")
            checked[str(key)] = values
        # (0, 0) and (1, 1) close every map, so any level in (0, 1) has a value and the map stays monotone.
        self.levels = levels
        self._xp = np.concatenate([[0.0], levels, [1.0]])
        self.maps = checked
        self._fp = {key: np.concatenate([[0.0], values, [1.0]]) for key, values in checked.items()}

    def level(self, key: str, q: float) -> float:
        """The level at which group `key` is read to deliver nominal coverage q."""
        fp = self._fp.get(key)
        if fp is None:
            return q
        used = float(np.interp(q, self._xp, fp))
        return min(max(used, 1e-6), 1.0 - 1e-6)  # np.quantile accepts [0, 1]; keep strictly inside

    def to_manifest(self, **details) -> dict:
        return {"version": CALIBRATION_VERSION, "approach": CALIBRATED_APPROACH,
                "levels": [round(float(x), 6) for x in self.levels],
                "maps": {key: [round(float(x), 6) for x in values] for key, values in self.maps.items()},
                **details}

    @classmethod
    def from_manifest(cls, section) -> "QuantileCalibration":
        if not isinstance(section, dict):
            raise ValueError("the section is not an object")
        version = section.get("version")
        if version != CALIBRATION_VERSION:
            raise ValueError(f"version {version!r} is not one this MESP reads ({CALIBRATION_VERSION})")
        if section.get("approach", CALIBRATED_APPROACH) != CALIBRATED_APPROACH:
            raise ValueError(f"approach {section.get('approach')!r}: only {CALIBRATED_APPROACH!r} maps exist")
        maps = section.get("maps")
        levels = section.get("levels")
        if not isinstance(maps, dict) or not isinstance(levels, list):
            raise ValueError("it needs a 'levels' list and a 'maps' object")
        try:
            return cls(levels, maps)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


def load_quantile_calibration(model_dir, manifest: dict) -> QuantileCalibration | None:
    """The manifest's quantile calibration, None when it has none; ArtifactError when it is corrupt."""
    section = manifest.get(CALIBRATION_SECTION)
    if section is None:
        return None
    try:
        return QuantileCalibration.from_manifest(section)
    except ValueError as exc:
        raise ArtifactError(f"{model_dir}: manifest section {CALIBRATION_SECTION!r} is unusable: {exc}") from None
