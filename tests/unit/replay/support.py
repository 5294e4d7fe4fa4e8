"""Small real forecasters and traces the replay tests share."""

import numpy as np

from mesp_core.policy import PolicyConfig
from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.replay.policies import ForecastFloorPolicy


def repeat_period(period):
    """Seasonal-naive forecaster in numpy: the last `period` minutes, repeated."""

    def forecast(contexts, horizon):
        ctx = np.asarray(contexts, dtype=np.float64)
        reps = -(-horizon // period)
        return np.tile(ctx[:, -period:], reps)[:, :horizon]

    return forecast


def scaled_quantile(point):
    def forecast(contexts, horizon, q):
        return point(contexts, horizon) * (0.5 + q)

    return forecast


def periodic_trace(n=1, T=1440, period=30, value=5.0, phase=0):
    counts = np.zeros((n, T), dtype=np.float32)
    counts[:, phase::period] = value
    return counts


def random_trace(n=40, T=400, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.lognormal(0.0, 2.0, size=(n, 1)) * (1 + np.sin(np.arange(T) / 40.0))[None, :]
    counts = rng.poisson(rate).astype(np.float32)
    counts[: n // 4] *= rng.random((n // 4, T)) < 0.1  # a quarter sparse
    return counts


def totals(report, name):
    r = report.result(name)
    return r.cold_starts, r.idle_instance_minutes


def all_policy_kinds(point):
    return {
        "ka10": FixedKeepAlivePolicy(10),
        "hybrid": HybridHistogramPolicy(min_samples=3),
        "point": ForecastFloorPolicy(point, config=PolicyConfig(cooldown_minutes=3)),
        "q0.9": ForecastFloorPolicy(quantile_forecaster=scaled_quantile(point), quantile=0.9, group="sweep"),
    }


class LagModel:
    """A small real forecaster with the loaded-model interface: seasonal lags per approach."""

    lags = {"naive": 60, "dense": 30, "moe": 10}
    manifest = {"input_size": 120}

    def __init__(self):
        self.calls = []

    def forecast(self, context, horizon, approach="moe"):
        self.calls.append(("forecast", approach, np.asarray(context).shape[1]))
        return repeat_period(self.lags[approach])(context, horizon)

    def forecast_quantile(self, context, horizon, q=0.9, approach="moe"):
        self.calls.append(("quantile", approach, q))
        return self.forecast(context, horizon, approach) * (0.5 + q)


def all_policies(point):
    return {
        "keep-alive 10": FixedKeepAlivePolicy(10),
        "hybrid": HybridHistogramPolicy(),
        "floor": ForecastFloorPolicy(point),
        "floor q": ForecastFloorPolicy(quantile_forecaster=scaled_quantile(point), quantile=0.9),
        "oracle": OraclePolicy(),
    }


def replay_settings(n=2, **overrides):
    """The settings a replay hands its policies, for tests that plan one step by hand."""
    from mesp_core.replay.policies import ReplaySettings

    values = dict(capacity_per_instance=60.0, keep_warm_minutes=2, lead_minutes=1, replan_every=1, horizon=None,
                  context_minutes=None, start_minute=10, end_minute=40, n_functions=n, plan_from=9,
                  capacity_per_function=np.full(n, 60.0))
    values.update(overrides)
    return ReplaySettings(**values)
