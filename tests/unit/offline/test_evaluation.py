"""Experiment 3's rolling-origin backtest (mesp_core.offline.evaluation) on the session's tiny model."""

import numpy as np
import pytest

from mesp_core.offline.evaluation import backtest, format_table
from mesp_core.offline.split import held_out_functions


def test_backtest_compares_every_approach_on_the_same_forecasts(tiny_model, tiny_trace):
    held = held_out_functions(tiny_model, tiny_trace)
    result = backtest(tiny_model, tiny_trace.counts[held], origins=range(720, 1381, 120), horizon=60)
    assert result.approaches[0] == "moe" and "seasonal_naive" in result.approaches
    assert result.n_forecasts == len(held) * 6
    for name in result.approaches:
        metrics = result.overall[name]
        assert np.isfinite(metrics["wape"]) and metrics["wape"] >= 0 and metrics["rmse"] >= metrics["mae"] - 1e-9
    assert sum(result.cluster_sizes.values()) == result.n_forecasts
    table = format_table(result)
    assert "moe" in table and "wape" in table


def test_approach_names_list_the_mixture_each_dense_model_and_both_floors(tiny_model):
    from mesp_core.offline.evaluation import approach_names

    dense = [f"dense:{family}" for family in tiny_model.dense_experts]
    assert dense and approach_names(tiny_model) == ["moe", *dense, "seasonal_naive", "repeat_last_hour"]


def test_origins_are_minutes_of_the_last_day_and_every_approach_sees_the_same_pairs(tiny_model, tiny_trace):
    counts = tiny_trace.counts[:5]
    result = backtest(tiny_model, counts, origins=[720, 840, 960], horizon=30, approaches=["moe", "repeat_last_hour"])
    assert result.origins == [720, 840, 960] and result.n_forecasts == 15 and result.approaches == ["moe", "repeat_last_hour"]
    assert result.samples["origin"] == 1440 + 840  # the middle origin, on the second day
    item = result.samples["items"][0]
    context = counts[item["function"], : 1440 + 840]
    np.testing.assert_allclose(item["forecasts"]["repeat_last_hour"], context[-60:-30])  # its own last hour, repeated
    np.testing.assert_allclose(item["actual"], counts[item["function"], 2280:2310])
    payload = result.to_json()
    assert payload["protocol"] == {"origins": [720, 840, 960], "horizon": 30, "n_functions": 5, "n_forecasts": 15,
                                   "context": "every minute before the origin"}
    assert set(payload["overall"]) == {"moe", "repeat_last_hour"}
    # day_offset moves the origins to another day (here the first).
    assert backtest(tiny_model, counts, origins=[720], horizon=10, day_offset=0, n_samples=1).samples["origin"] == 720


def test_the_best_wape_is_starred_once(tiny_model, tiny_trace):
    result = backtest(tiny_model, tiny_trace.counts[:6], origins=[900, 1200], horizon=30)
    best = min(result.approaches, key=lambda name: result.overall[name]["wape"])
    starred = [line for line in format_table(result).splitlines() if line.split()[1:2] == ["*"]]
    assert [line.split()[0] for line in starred] == [best]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"counts": np.zeros((0, 2880))}, "non-empty"),
        ({"counts": np.zeros(2880)}, "non-empty"),
        ({"origins": [1400]}, "origin 1400 leaves no room for 60 minutes of context and a 60-minute horizon"),
        ({"origins": [30], "day_offset": 0}, "origin 30 leaves no room"),
        ({"approaches": ["moe", "bogus"]}, "unknown approach 'bogus'"),
    ],
)
def test_backtest_refuses_what_it_cannot_score(tiny_model, tiny_trace, kwargs, message):
    args = {"counts": tiny_trace.counts[:3], "origins": [720], "horizon": 60} | kwargs
    with pytest.raises(ValueError, match=message):
        backtest(tiny_model, **args)


def test_the_mixtures_quantile_coverage_is_measured_per_cluster(tiny_model, tiny_trace):
    result = backtest(tiny_model, tiny_trace.counts[:12], origins=[900, 1200], horizon=30)
    coverage = result.coverage
    assert coverage["calibrated"] is False and set(coverage["per_cluster"]) == set(result.per_cluster)
    total = sum(entry["n_minutes"] for entry in coverage["per_cluster"].values())
    assert total == coverage["overall"]["n_minutes"] == result.n_forecasts * 30
    for summary in [coverage["overall"], *coverage["per_cluster"].values()]:
        shares = [summary[f"{q:g}"]["at_or_below"] for q in (0.5, 0.8, 0.9, 0.95)]
        assert shares == sorted(shares)
        for q in (0.5, 0.8, 0.9, 0.95):
            entry = summary[f"{q:g}"]
            assert 0.0 <= entry["below"] <= entry["pit"] <= entry["at_or_below"] <= 1.0
    curve = coverage["reliability"]["all"]
    assert len(curve["levels"]) == len(curve["pit"]) == 19 and curve["pit"] == sorted(curve["pit"])
    lines = format_table(result).splitlines()
    assert any(line.startswith("all") for line in lines) and "randomized PIT" in "\n".join(lines)
    assert backtest(tiny_model, tiny_trace.counts[:3], origins=[900], horizon=10, coverage=False).coverage == {}
