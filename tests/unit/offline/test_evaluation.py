"""Experiment 3's rolling-origin backtest (mesp_core.offline.evaluation) on the session's tiny model."""

import numpy as np

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
