"""The model shipped in the package (the operator's and the image's default): it loads, answers the
model interface, and on the real sample's functions it never trained on it still does what
docs/RESULTS.md says (MoE below seasonal naive and every dense model by WAPE)."""

from pathlib import Path

import numpy as np
import pytest

import mesp_core
from mesp_core.offline.evaluation import backtest
from mesp_core.offline.split import held_out_functions
from mesp_core.forecasting.model import default_model_path
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.reader import read_invocations

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
needs_shared_data = pytest.mark.skipif(not SAMPLE.exists(), reason="the shared Azure sample is not beside the checkout")


@pytest.fixture(scope="module")
def model():
    return mesp_core.load_model(default_model_path())


def test_default_model_is_trained_on_the_real_sample(model):
    data = model.manifest["training_data"]
    assert data["n_functions"] == 6418 and data["n_test_functions"] > 1000
    assert len(model.manifest["clusters"]) >= 3
    assert model.manifest.get("recent_check", {}).get("enabled") is True


def test_default_model_answers_the_interface(model):
    counts = generate_trace(n_functions=40, days=2, seed=3).counts
    context = counts[:, :2000]
    point = model.forecast(context, 30)
    distribution = model.forecast_distribution(context, 30)
    median, upper, top = (distribution.quantile(q) for q in (0.5, 0.9, 0.99))
    assert point.shape == upper.shape == (40, 30)
    assert np.isfinite(point).all() and (point >= 0).all()
    # Quantiles come from each function's own residuals, so q0.9 may sit below the point forecast
    # of a function the model overshoots; they must still be ordered.
    assert (median <= upper + 1e-4).all() and (upper <= top + 1e-4).all()
    routes = model.explain_routes(context)
    assert len(routes) == 40 and all("description" in r for r in routes)
    plan = model.plan_min_scale(context, 30, capacity_per_instance=60.0, lead_minutes=1)
    assert plan.shape == (40, 30) and plan.dtype.kind == "i" and (plan >= 0).all()


def test_default_model_quantiles_are_calibrated_on_its_validation_functions(model):
    calibration = model.quantile_calibration
    assert calibration is not None and {"cluster-0", "repeat_last_hour"} <= set(calibration.maps)
    section = model.manifest["quantile_calibration"]
    assert section["target"] == "pit" and section["protocol"]["n_val_functions"] == model.manifest["training_data"]["n_val_functions"]
    after = section["validation"]["overall"]["after"]
    for q in (0.5, 0.8, 0.9, 0.95):
        assert abs(after[f"{q:g}"]["pit"] - q) <= 0.03, after  # as docs/RESULTS.md reports
        assert after[f"{q:g}"]["below"] <= q <= after[f"{q:g}"]["at_or_below"]


@needs_shared_data
def test_default_model_beats_naive_and_dense_on_unseen_real_functions(model):
    trace = read_invocations(SAMPLE)
    held = held_out_functions(model, trace)
    assert len(held) == model.manifest["training_data"]["n_test_functions"]
    result = backtest(model, trace.counts[held], coverage=False)
    wape = {name: metrics["wape"] for name, metrics in result.to_json()["overall"].items()}
    dense = [name for name in wape if name.startswith("dense")]
    assert dense, wape
    assert wape["moe"] < wape["seasonal_naive"] and all(wape["moe"] < wape[name] for name in dense), wape
