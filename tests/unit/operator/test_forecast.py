"""The loop's model batch: one model run per (approach, length), quantiles per row, routes labelled by
the library from the rows the recent-error check switched."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import mesp_core
from mesp_operator.forecast import forecast_batch

GOLDEN_MODEL = Path(__file__).resolve().parents[3] / "tests" / "golden" / "model_v1"


class _Distribution:
    def __init__(self, point: np.ndarray, switched: np.ndarray):
        self.point, self.switched = point, switched

    def quantile(self, q: float) -> np.ndarray:
        return self.point + q


class _RecordingModel:
    """Forecasts each row as its first value repeated; rows whose first value is odd count as switched."""

    def __init__(self):
        self.runs: list[tuple[str, int, list[float]]] = []
        self.switched_given = None

    def forecast_distribution(self, contexts, horizon, approach):
        self.runs.append((approach, horizon, [float(c[0]) for c in contexts]))
        first = contexts[:, :1]
        return _Distribution(np.repeat(first, horizon, axis=1), first[:, 0] % 2 == 1)

    def explain_routes(self, contexts, switched=None):
        self.switched_given = list(switched)
        return [{"cluster": int(c[0]), "expert": "x", "description": "", "distance": 0.0} for c in contexts]


def test_one_model_run_per_approach_and_length_and_routes_get_each_rows_switch():
    model = _RecordingModel()
    contexts = np.array([[1.0] * 4, [2.0] * 4, [3.0] * 4, [4.0] * 4], dtype=np.float32)
    requests = [("moe", 5, 0.9), ("dense", 5, None), ("moe", 5, 0.5), ("moe", 7, 0.9)]
    result = forecast_batch(model, contexts, requests)
    assert model.runs == [("moe", 5, [1.0, 3.0]), ("dense", 5, [2.0]), ("moe", 7, [4.0])]
    assert model.switched_given == [True, False, True, False]  # in the rows' own order, not the groups'
    assert [len(p) for p in result.point] == [5, 5, 5, 7]
    assert result.upper[1] is None  # no quantile: sized from the point forecast
    np.testing.assert_allclose(result.upper[0], 1.9)
    np.testing.assert_allclose(result.upper[2], 3.5)
    assert [r["cluster"] for r in result.routes] == [1, 2, 3, 4]


def test_with_the_real_model_the_routes_are_the_librarys_explanation():
    model = mesp_core.load_model(GOLDEN_MODEL)
    rng = np.random.default_rng(3)
    contexts = rng.poisson(20, size=(3, 1440)).astype(np.float32)
    result = forecast_batch(model, contexts, [("moe", 12, 0.9)] * 3)
    distribution = model.forecast_distribution(contexts, horizon=12, approach="moe")
    assert result.routes == model.explain_routes(contexts, switched=distribution.switched)
    np.testing.assert_array_equal(np.stack(result.point), distribution.point)
    np.testing.assert_array_equal(np.stack(result.upper), distribution.quantile(0.9))
