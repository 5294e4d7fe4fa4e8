"""`mesp calibrate`'s fit (mesp_core.offline.calibration): monotone maps, the identity for a calibrated
forecaster, nominal coverage on fresh samples for a miscalibrated one, and the packaged pipeline on the
tiny model (validation functions only, point forecasts untouched)."""

import json
from statistics import NormalDist

import numpy as np
import pytest

from mesp_core import load_model
from mesp_core.forecasting.calibration import CALIBRATION_SECTION
from mesp_core.offline.calibration import (
    MAP_LEVELS,
    CalibrationConfig,
    calibrate_model,
    describe_calibration,
    fit_calibration,
    fit_map,
    validation_samples,
)
from mesp_core.offline.coverage import MEASURE_GRID
from mesp_core.offline.floor_training import model_split

_INV = np.vectorize(NormalDist().inv_cdf)


class _Distribution:
    """Gaussian quantiles mean + sigma * z(level) per row, read through the forecaster's calibration."""

    def __init__(self, forecaster, n, horizon):
        self.forecaster, self.n, self.horizon = forecaster, n, horizon
        self.keys = np.array([f"cluster-{i % 2}" for i in range(n)], dtype=object)

    def quantile(self, q):
        cal = self.forecaster.quantile_calibration
        out = np.empty((self.n, self.horizon))
        for key, sigma in self.forecaster.sigma.items():
            level = q if cal is None else cal.level(key, q)
            out[self.keys == key] = self.forecaster.mean + sigma * _INV(level)
        return out

    def group_keys(self):
        return self.keys


class _GaussianForecaster:
    """A pure stand-in for the model: cluster-0 claims sigma 5 and cluster-1 sigma 20 around the true
    mean, for counts whose real sigma is 10 (too narrow and too wide)."""

    mean = 100.0

    def __init__(self, sigma=None):
        self.sigma = sigma or {"cluster-0": 5.0, "cluster-1": 20.0}
        self.quantile_calibration = None

    def forecast_distribution(self, context, horizon, approach="moe"):
        return _Distribution(self, len(context), horizon)


def _counts(seed, n=120):
    return np.random.default_rng(seed).normal(100.0, 10.0, size=(n, 1440)).astype(np.float32)


def test_the_map_inverts_a_coverage_curve_and_stays_monotone():
    assert np.all(np.diff(fit_map(MEASURE_GRID)) >= 0)
    np.testing.assert_allclose(fit_map(MEASURE_GRID), MAP_LEVELS, atol=1e-9)  # calibrated: identity
    noisy = np.clip(MEASURE_GRID + np.random.default_rng(0).normal(0, 0.03, MEASURE_GRID.size), 0, 1)
    assert np.all(np.diff(fit_map(noisy)) >= 0)
    too_wide = np.array([NormalDist().cdf(2.0 * NormalDist().inv_cdf(q)) for q in MEASURE_GRID])
    used = fit_map(too_wide)
    assert used[MAP_LEVELS.tolist().index(0.9)] < 0.9 and used[MAP_LEVELS.tolist().index(0.1)] > 0.1


def test_an_already_calibrated_forecaster_keeps_its_levels():
    forecaster = _GaussianForecaster({"cluster-0": 10.0, "cluster-1": 10.0})
    calibration, _ = fit_calibration(forecaster, _counts(0), CalibrationConfig(passes=1))
    for key in ("cluster-0", "cluster-1"):
        np.testing.assert_allclose(calibration.maps[key], MAP_LEVELS, atol=0.03)


def test_a_miscalibrated_forecaster_covers_nominal_levels_on_fresh_samples():
    forecaster = _GaussianForecaster()
    before = validation_samples(forecaster, _counts(2), 60)
    calibration, details = fit_calibration(forecaster, _counts(1), CalibrationConfig())
    assert details["validation"]["groups"]["cluster-0"]["n_forecasts"] == 12 * 60
    for values in calibration.maps.values():
        assert np.all(np.diff(values) >= 0)
    forecaster.quantile_calibration = calibration
    after = validation_samples(forecaster, _counts(2), 60)  # other counts than the fit saw
    for key in ("cluster-0", "cluster-1"):
        raw, fixed = before.subset(before.keys == key), after.subset(after.keys == key)
        for q in (0.5, 0.8, 0.9, 0.95):
            assert fixed.pit(q) == pytest.approx(q, abs=0.015)
        assert abs(raw.pit(0.9) - 0.9) > 0.05  # it was off before


def test_a_group_with_too_few_forecasts_keeps_its_levels():
    calibration, details = fit_calibration(_GaussianForecaster(), _counts(0, n=10), CalibrationConfig())
    assert calibration.maps == {} and details["validation"]["groups"]["cluster-0"]["n_forecasts"] == 60


def test_calibrate_model_uses_the_validation_functions_and_leaves_points_alone(tiny_model_dir, tiny_model, tiny_trace,
                                                                               tmp_path):
    out = tmp_path / "calibrated"
    section = calibrate_model(tiny_model_dir, tiny_trace, out, CalibrationConfig(min_forecasts=20))
    _fit, val = model_split(tiny_model, tiny_trace)
    assert section["protocol"]["n_val_functions"] == len(val)
    assert section["maps"] and CALIBRATION_SECTION not in json.loads((tiny_model_dir / "manifest.json").read_text())
    calibrated = load_model(out)
    assert calibrated.quantile_calibration is not None
    context = tiny_trace.counts[:, :1000]
    raw, mapped = tiny_model.forecast_distribution(context, 30), calibrated.forecast_distribution(context, 30)
    np.testing.assert_array_equal(raw.point, mapped.point)
    uppers = [mapped.quantile(q) for q in (0.5, 0.8, 0.9, 0.95)]
    assert all(np.all(b >= a) for a, b in zip(uppers, uppers[1:]))
    text = describe_calibration(section)
    assert text.splitlines()[1].lstrip().startswith("all") and "0.9:" in text
    # In place: the model folder itself gets the section, and a second run fits from the raw quantiles again.
    again = calibrate_model(out, tiny_trace, None, CalibrationConfig(min_forecasts=20))
    assert again["maps"] == section["maps"]


def test_a_bad_target_is_refused():
    with pytest.raises(ValueError, match="target"):
        CalibrationConfig(target="median").validate()
