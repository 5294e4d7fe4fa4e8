"""Coverage of a forecast's quantiles (mesp_core.offline.coverage) on generated data with known laws."""

from statistics import NormalDist

import numpy as np
import pytest

from mesp_core.offline.coverage import MEASURE_GRID, CoverageSamples


class _Quantiles:
    """A pure stand-in for a ForecastDistribution: quantiles of a known law per row."""

    def __init__(self, quantile_fn, n, key="cluster-0"):
        self._fn, self._n, self._key = quantile_fn, n, key

    def quantile(self, q):
        return self._fn(q)

    def group_keys(self):
        return np.full(self._n, self._key, dtype=object)


def _poisson_quantiles(mean, size):
    """Quantile function of Poisson(mean) per entry (mean: array), the smallest k with CDF(k) >= q."""
    ks = np.arange(0, 60)
    log_pmf = ks[:, None, None] * np.log(mean)[None] - mean[None] - np.cumsum(np.log(np.maximum(ks, 1)))[:, None, None]
    cdf = np.cumsum(np.exp(log_pmf), axis=0)
    return lambda q: (cdf < q).sum(axis=0).astype(np.float32)


def test_a_calibrated_continuous_forecaster_covers_each_level():
    rng = np.random.default_rng(0)
    actual = rng.normal(50.0, 5.0, size=(400, 30))
    dist = _Quantiles(lambda q: np.full(actual.shape, 50.0 + 5.0 * NormalDist().inv_cdf(q)), 400)
    samples = CoverageSamples.measure(dist, actual)
    np.testing.assert_allclose(samples.pit_curve(), MEASURE_GRID, atol=0.01)
    for q in (0.5, 0.8, 0.9, 0.95):
        assert samples.pit(q) == pytest.approx(q, abs=0.01)
        assert samples.at_or_below(q) == pytest.approx(samples.pit(q), abs=0.006)  # no ties without whole numbers


def test_a_calibrated_count_forecaster_sits_in_the_bracket_and_has_nominal_pit():
    # Poisson counts, half of them near 0: the plain share at or below overshoots, the PIT does not.
    rng = np.random.default_rng(1)
    mean = np.where(np.arange(600)[:, None] % 2 == 0, 0.4, 6.0) * np.ones((600, 20))
    actual = rng.poisson(mean).astype(np.float32)
    samples = CoverageSamples.measure(_Quantiles(_poisson_quantiles(mean, actual.shape), 600), actual)
    for q in (0.5, 0.8, 0.9, 0.95):
        assert samples.below(q) <= q <= samples.at_or_below(q)
        assert samples.pit(q) == pytest.approx(q, abs=0.02)
    assert samples.at_or_below(0.5) > 0.6  # the overshoot the PIT corrects


def test_levels_off_the_measuring_grid_are_refused():
    samples = CoverageSamples(np.zeros((2, 3)), np.zeros((2, 3)), np.array(["a", "b"], dtype=object))
    with pytest.raises(ValueError, match="not on the measuring grid"):
        samples.at_or_below(0.123)
