"""`mesp calibrate`: per-cluster maps that make the experts' quantiles cover what they promise.

Target: by default the randomized-PIT coverage of the counts (mesp_core.offline.coverage explains why
the plain share at or below cannot reach 0.5 on traffic that is idle half the time); `--target
at_or_below` fits that share instead.

Protocol: on the model's own validation functions (never a held-out one, see `model_split`),
forecasts from origins every 60 minutes from 720 to 1380 of the last day (the protocol of `mesp
evaluate` and of the recent-error check), all 60 lead minutes pooled. For every residual group of
the mixture (the experts' clusters, the idle group, repeat-last-hour where the recent-error check
took over) the coverage curve c(q') over a fine grid of levels is measured with the model as it is,
and the stored map is its inverse: the level q' with c(q') = q, for q = 0.01 ... 0.99.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.forecasting.artifact import commit_output_dir, prepare_output_dir, read_manifest, write_manifest
from mesp_core.forecasting.calibration import CALIBRATED_APPROACH, CALIBRATION_SECTION, QuantileCalibration
from mesp_core.forecasting.model import load_model
from mesp_core.offline.coverage import GRID_STEP, MEASURE_GRID, REPORT_LEVELS, CoverageSamples
from mesp_core.offline.evaluation import DEFAULT_ORIGINS

MAP_LEVELS = np.round(np.arange(1, 100) / 100.0, 6)  # nominal levels the map stores
# Groups with fewer validation forecasts keep their nominal levels (too little to fit a curve on).
MIN_FORECASTS = 100
TARGETS = ("pit", "at_or_below")


@dataclass(frozen=True)
class CalibrationConfig:
    max_val_functions: int = 1500   # a seeded sample beyond this
    horizon: int = 60
    seed: int = 0
    min_forecasts: int = MIN_FORECASTS
    passes: int = 2                 # fit, then refit what is left (see fit_calibration)
    target: str = "pit"             # "pit" (randomized PIT, the default) or "at_or_below" (the replay's share)

    def validate(self) -> "CalibrationConfig":
        for name in ("max_val_functions", "horizon", "min_forecasts", "passes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"calibration {name} must be a positive integer, got {value!r}")
        if self.target not in TARGETS:
            raise ValueError(f"calibration target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        return self


def fit_map(curve: np.ndarray) -> np.ndarray:
    """The inverse of a coverage curve measured on MEASURE_GRID: the level for each MAP_LEVELS nominal
    level. Monotone; the identity (up to grid noise) when the curve is the identity."""
    xp = np.concatenate([[0.0], np.maximum.accumulate(np.clip(curve, 0.0, 1.0)), [1.0]])
    fp = np.concatenate([[0.0], MEASURE_GRID, [1.0]])
    # np.interp needs increasing x: flat stretches of the curve (no sample between two levels) get a
    # negligible slope, so the inverse takes their first level.
    xp = xp + np.arange(len(xp)) * 1e-12
    used = np.interp(MAP_LEVELS, xp, fp)
    return np.clip(np.maximum.accumulate(used), 1e-4, 1.0 - 1e-4)


def usable_origins(n_minutes: int, horizon: int, origins=DEFAULT_ORIGINS) -> list[int]:
    """The protocol's origins (minutes of the last day) a trace of `n_minutes` has room for."""
    day_offset = max(0, (n_minutes // MINUTES_PER_DAY - 1) * MINUTES_PER_DAY)
    return [day_offset + o for o in origins if day_offset + o >= 60 and day_offset + o + horizon <= n_minutes]


def validation_samples(model, counts: np.ndarray, horizon: int, origins=DEFAULT_ORIGINS) -> CoverageSamples:
    """CoverageSamples of the mixture's quantiles on `counts` (validation functions, last-day origins)."""
    parts = []
    for origin in usable_origins(counts.shape[1], horizon, origins):
        distribution = model.forecast_distribution(counts[:, :origin], horizon, approach=CALIBRATED_APPROACH)
        parts.append(CoverageSamples.measure(distribution, counts[:, origin:origin + horizon]))
    if not parts:
        raise ValueError(f"the trace has {counts.shape[1]} minutes: no origin of the last day leaves a {horizon}-minute horizon")
    return CoverageSamples.concatenate(parts)


def fit_calibration(model, counts: np.ndarray, config: CalibrationConfig | None = None) -> tuple[QuantileCalibration, dict]:
    """Fit the maps on `counts` (the model's validation functions) with the model's quantiles as they
    are measured without any calibration. Returns the calibration and the manifest's details."""
    config = (config or CalibrationConfig()).validate()
    counts = np.asarray(counts, dtype=np.float32)
    before = validation_samples(_with_calibration(model, None), counts, config.horizon)
    keys = sorted(set(before.keys.tolist()))
    groups = {key: {"n_forecasts": int((before.keys == key).sum())} for key in keys}
    fitted = [key for key in keys if groups[key]["n_forecasts"] >= config.min_forecasts]
    maps = {key: fit_map(before.subset(before.keys == key).curve(config.target)) for key in fitted}
    after = before
    for _ in range(config.passes - 1):
        # A map moves the mass a count's PIT spreads over (a run of zeros) unevenly, so one inverse
        # lands near, not on, nominal: the next pass inverts what is left and composes the two.
        after = validation_samples(_with_calibration(model, QuantileCalibration(MAP_LEVELS, maps)), counts, config.horizon)
        for key in fitted:
            nominal = fit_map(after.subset(after.keys == key).curve(config.target))
            maps[key] = np.clip(np.interp(nominal, _closed(MAP_LEVELS), _closed(maps[key])), 1e-4, 1.0 - 1e-4)
    calibration = QuantileCalibration(MAP_LEVELS, maps)
    after = validation_samples(_with_calibration(model, calibration), counts, config.horizon)
    for key in keys:
        groups[key]["before"] = before.subset(before.keys == key).summary()
        groups[key]["after"] = after.subset(after.keys == key).summary()
    details = {
        "target": config.target,  # pit: randomized PIT of counts (Czado, Gneiting & Held 2009)
        "protocol": {"origins": [int(o) for o in DEFAULT_ORIGINS], "horizon": config.horizon,
                     "leads": "all pooled", "n_val_functions": int(len(counts)), "grid_step": GRID_STEP,
                     "min_forecasts": config.min_forecasts, "passes": config.passes, "seed": config.seed},
        "validation": {"overall": {"before": before.summary(), "after": after.summary()}, "groups": groups},
    }
    return calibration, details


def _with_calibration(model, calibration):
    """The model reading its quantiles through `calibration` (None: as they come), the model untouched."""
    view = copy.copy(model)
    view.quantile_calibration = calibration
    return view


def _closed(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], values, [1.0]])


def calibrate_model(model_dir, trace, out_dir=None, config: CalibrationConfig | None = None) -> dict:
    """Fit the maps on the model's own validation functions and store them in the manifest of
    `out_dir` (a copy of the model; the model folder itself when None). Returns the new section."""
    from mesp_core.offline.floor_training import model_split

    config = (config or CalibrationConfig()).validate()
    model_dir = Path(model_dir)
    model = load_model(model_dir, backend="torch")  # offline: the torch backend, as training itself
    _fit, val = model_split(model, trace)
    if len(val) > config.max_val_functions:
        val = np.sort(np.random.default_rng(config.seed).choice(val, config.max_val_functions, replace=False))
    calibration, details = fit_calibration(model, np.asarray(trace.counts)[val], config)
    section = calibration.to_manifest(**details)
    target = model_dir if out_dir is None else Path(out_dir)
    if out_dir is not None and target.resolve() == model_dir.resolve():
        target, out_dir = model_dir, None
    if out_dir is None:
        manifest = read_manifest(model_dir)
        manifest[CALIBRATION_SECTION] = section
        write_manifest(model_dir, _without_format(manifest))  # one atomic rename of the manifest
        return section
    staging = prepare_output_dir(target)
    try:
        for item in model_dir.iterdir():
            shutil.copytree(item, staging / item.name) if item.is_dir() else shutil.copy2(item, staging / item.name)
        manifest = read_manifest(staging)
        manifest[CALIBRATION_SECTION] = section
        write_manifest(staging, _without_format(manifest))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    commit_output_dir(staging, target)
    return section


def _without_format(manifest: dict) -> dict:
    """write_manifest puts format and version first again."""
    return {k: v for k, v in manifest.items() if k not in ("format", "format_version")}


def describe_calibration(section: dict) -> str:
    """Per group: validation coverage before -> after at the report levels (PIT; at or below)."""
    lines = [f"quantile calibration ({section['target']}) fitted on {section['protocol']['n_val_functions']} "
             "validation functions (coverage before -> after; randomized PIT, then share at or below)"]
    rows = [("all", section["validation"]["overall"])] + [
        (key, entry) for key, entry in section["validation"]["groups"].items()]
    for key, entry in rows:
        before, after = entry["before"], entry["after"]
        cells = "  ".join(f"{q:g}: {before[f'{q:g}']['pit']:.3f}->{after[f'{q:g}']['pit']:.3f} "
                          f"({before[f'{q:g}']['at_or_below']:.3f}->{after[f'{q:g}']['at_or_below']:.3f})"
                          for q in REPORT_LEVELS)
        mapped = "" if key == "all" or key in section["maps"] else " [too few forecasts: nominal levels kept]"
        lines.append(f"  {key:<18} {cells}{mapped}")
    return "\n".join(lines)
