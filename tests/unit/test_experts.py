"""Every expert family: fit/predict shapes, non-negativity, round trips, warm starts, period detection."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mesp_core.forecasting.experts import (
    APERIODIC,
    EXPERT_FAMILIES,
    TRAINABLE_FAMILIES,
    DLinear,
    Expert,
    RepeatLastHour,
    SeasonalNaive,
    TorchExpert,
    build_expert,
    detect_periods,
)
from mesp_core.data.windows import make_windows

HORIZON = 60
INPUT = 120
# Small architectures so that the whole file stays fast on one thread.
TINY = {
    "dlinear": {},
    "nbeats": {"n_stacks": 1, "n_blocks": 2, "width": 32},
    "lstm": {"hidden_size": 16, "patch_len": 24},
    "patchtst": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "patch_len": 24, "stride": 12},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def periodic_series(n_series=12, length=900, period=45, noise=1.0, seed=0):
    """Spiky periodic counts with Poisson-like noise, levels spanning two orders of magnitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for i in range(n_series):
        level = 10 ** rng.uniform(0, 2)
        shape = 1 + 0.9 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + 2.0 * (t % period == 3)
        out.append(np.maximum(level * shape + noise * rng.normal(0, np.sqrt(level), size=length), 0).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def windows():
    series = periodic_series()
    train = make_windows(series[:9], INPUT, HORIZON, stride=15)
    val = make_windows(series[9:], INPUT, HORIZON, stride=30)
    return train, val


def tiny(family, **extra):
    return build_expert({"family": family, "input_size": INPUT, "horizon": HORIZON, "max_epochs": 2, **TINY[family], **extra})


# A blend is built from other experts, so the generic per-family tests below cover the others.
STANDALONE = sorted(set(EXPERT_FAMILIES) - {"blend"})


def test_registry_names_every_family():
    assert set(EXPERT_FAMILIES) == {"seasonal_naive", "repeat_last_hour", "dlinear", "nbeats", "lstm", "patchtst", "blend"}
    assert set(TRAINABLE_FAMILIES) == {"dlinear", "nbeats", "lstm", "patchtst"}
    for name, cls in EXPERT_FAMILIES.items():
        assert issubclass(cls, Expert) and cls.family == name
        assert cls.trainable == issubclass(cls, TorchExpert)


@pytest.mark.parametrize("family", STANDALONE)
def test_fit_predict_shapes_and_non_negative(family, windows):
    train, val = windows
    expert = tiny(family) if family in TINY else build_expert({"family": family})
    assert expert.fit(train, val) is expert
    # Ragged raw contexts, including ones shorter than input_size, and a 2-D batch.
    ragged = [val.x[0][-60:], val.x[1], np.concatenate([val.x[2], val.x[2]])]
    out = expert.predict(ragged)
    assert out.shape == (3, HORIZON) and out.dtype == np.float32
    batch = expert.predict(val.x)
    assert batch.shape == (len(val), HORIZON)
    assert np.isfinite(batch).all() and (batch >= 0).all()
    # Idle contexts must not produce negative forecasts either.
    assert (expert.predict(np.zeros((4, INPUT))) >= 0).all()
    if expert.trainable:
        assert expert.fit_report_["epochs"] == 2 and expert.fit_report_["steps"] > 0


@pytest.mark.parametrize("family", STANDALONE)
def test_round_trip_through_safetensors_predicts_identically(family, windows):
    train, val = windows
    expert = tiny(family, seed=3) if family in TINY else build_expert({"family": family})
    expert.fit(train, val)
    config = json.loads(json.dumps(expert.config()))
    state = st_load(st_save(expert.state_dict())) if expert.state_dict() else {}
    assert all(t.dtype == torch.float32 for t in state.values())
    rebuilt = build_expert(config, state)
    assert type(rebuilt) is type(expert) and rebuilt.config() == expert.config()
    np.testing.assert_array_equal(rebuilt.predict(val.x), expert.predict(val.x))


@pytest.mark.parametrize("family", sorted(TRAINABLE_FAMILIES))
def test_training_is_deterministic_per_seed(family, windows):
    train, val = windows
    a = tiny(family, seed=7).fit(train, val)
    torch.manual_seed(123)  # global RNG state must not matter
    b = tiny(family, seed=7).fit(train, val)
    np.testing.assert_array_equal(a.predict(val.x[:5]), b.predict(val.x[:5]))


@pytest.mark.parametrize("family", sorted(TRAINABLE_FAMILIES))
def test_search_space_builds_valid_experts(family):
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cls = EXPERT_FAMILIES[family]
    for _ in range(4):
        params = cls.search_space(study.ask())
        assert params["input_size"] in (120, 240, 480)
        expert = cls(horizon=HORIZON, **params)
        assert expert.predict(np.ones((2, 30))).shape == (2, HORIZON)


def test_warm_start_copies_weights_then_fine_tunes(windows):
    train, val = windows
    source = tiny("nbeats", seed=1).fit(train, val)
    copy = tiny("nbeats", seed=2).fit(train, val, init_from=source, max_seconds=0)
    assert copy.fit_report_["steps"] == 0 and copy.fit_report_["stopped"] == "max_seconds"
    for key, tensor in source.state_dict().items():
        assert torch.equal(copy.state_dict()[key], tensor), key
    tuned = tiny("nbeats", seed=2).fit(train, val, init_from=source)
    # It starts where the source ended, and never ends worse than that on val.
    assert tuned.fit_report_["initial_val_loss"] == pytest.approx(source.fit_report_["best_val_loss"], rel=1e-6)
    assert tuned.fit_report_["best_val_loss"] <= tuned.fit_report_["initial_val_loss"]
    fresh = tiny("nbeats", seed=2)
    assert not torch.equal(fresh.state_dict()["stacks.0.0.forecast.weight"], source.state_dict()["stacks.0.0.forecast.weight"])


def test_warm_start_rejects_other_shapes_or_families(windows):
    train, val = windows
    source = tiny("dlinear").fit(train, val)
    with pytest.raises(ValueError, match="moving_avg"):
        tiny("dlinear", moving_avg=13).fit(train, val, init_from=source)
    with pytest.raises(ValueError, match="init_from must be a trained nbeats"):
        tiny("nbeats").fit(train, val, init_from=source)


def test_early_stopping_keeps_the_best_validation_weights(windows):
    train, val = windows
    expert = tiny("dlinear", max_epochs=30, patience=1, lr=0.05).fit(train, val)
    report = expert.fit_report_
    assert report["stopped"] in ("early_stopping", "max_epochs")
    assert report["best_val_loss"] <= report["initial_val_loss"]
    assert expert._loss(*_scaled(expert, val)) == pytest.approx(report["best_val_loss"], rel=1e-5)


def _scaled(expert, ws):
    scale = expert._scale(ws.x)
    return torch.from_numpy(ws.x / scale), torch.from_numpy(ws.y / scale), expert._loss_weights(scale)


def test_fit_accepts_wider_windows_and_cuts_them(windows):
    train, val = windows
    wide = make_windows(periodic_series(n_series=3), 240, HORIZON, stride=60)
    expert = tiny("dlinear").fit(wide, None)
    assert expert.predict(wide.x).shape == (len(wide), HORIZON)


def test_progress_bar_reports_epochs(windows, capsys):
    train, val = windows
    tiny("dlinear").fit(train, val, progress="cluster 3")
    assert "cluster 3" in capsys.readouterr().err


def test_dlinear_beats_repeat_last_hour_on_noisy_periodic_signal():
    # Period 45: repeating the last hour is out of phase, a trained model is not.
    series = periodic_series(n_series=16, length=1500, period=45, noise=1.0, seed=5)
    train = make_windows(series[:12], 240, HORIZON, stride=10)
    val = make_windows(series[12:14], 240, HORIZON, stride=20)
    test = make_windows(series[14:], 240, HORIZON, stride=20)
    model = DLinear(horizon=HORIZON, input_size=240, max_epochs=15, seed=0).fit(train, val)
    mae_model = np.abs(model.predict(test.x) - test.y).mean()
    mae_naive = np.abs(RepeatLastHour().predict(test.x) - test.y).mean()
    assert mae_model < 0.7 * mae_naive, (mae_model, mae_naive)


@pytest.mark.parametrize("period", [1, 2, 5, 10, 15, 30, 60, 120])
def test_seasonal_naive_recovers_the_exact_period(period):
    rng = np.random.default_rng(period)
    pattern = rng.integers(0, 50, size=period).astype(np.float64)
    series = np.tile(pattern, 3000 // period + 1)[:3000]
    contexts = [series[:length] for length in (3000, 600, 250)]
    assert detect_periods(contexts).tolist() == [period] * 3
    expert = SeasonalNaive()
    forecast = expert.predict([series[:2000]])[0]
    np.testing.assert_allclose(forecast, series[2000 : 2000 + HORIZON])


def test_seasonal_naive_finds_a_daily_period_only_with_enough_history():
    rng = np.random.default_rng(0)
    t = np.arange(4 * 1440)
    daily = 50 + 45 * np.sin(2 * np.pi * t / 1440) + 40 * ((t % 1440) // 60 == 9)
    series = rng.poisson(daily).astype(np.float64)
    periods = detect_periods([series[:2880], series[:1000]])
    assert periods[0] == 1440
    assert periods[1] != 1440  # a day cannot be seen in 1000 minutes


def test_seasonal_naive_falls_back_to_recent_mean_on_noise():
    rng = np.random.default_rng(1)
    noise = rng.poisson(20, size=(3, 1500)).astype(np.float64)
    assert (detect_periods(noise) == APERIODIC).all()
    forecast = SeasonalNaive().predict(noise)
    np.testing.assert_allclose(forecast, np.repeat(noise[:, -60:].mean(axis=1, keepdims=True), HORIZON, axis=1), rtol=1e-5)


def test_seasonal_naive_short_contexts_use_what_they_have():
    forecast = SeasonalNaive().predict([np.arange(60, dtype=np.float64)])
    np.testing.assert_allclose(forecast, np.full((1, HORIZON), 29.5))
    assert (SeasonalNaive().predict(np.zeros((2, 500))) == 0).all()


def test_seasonal_naive_lengths_ignore_padding():
    pattern = np.array([0.0, 0, 0, 0, 9])
    context = np.tile(pattern, 40)  # 200 minutes of a 5-minute timer
    padded = np.concatenate([np.full(300, 100.0), context])[None, :]
    assert detect_periods(padded, lengths=np.array([200]))[0] == 5


def _period_errors_by_loops(row, horizon, candidates, mean_window, span=1440):
    """The quantities _period_errors derives from FFTs and cumulative sums, computed pair by pair."""
    from mesp_core.forecasting.experts.naive import _enough_history, _lags_for

    recent = row[-span:]

    def mean_sq_diff(x, lag):
        return np.mean([(x[t] - x[t - lag]) ** 2 for t in range(lag, len(x))])

    def moment(k):
        return np.mean([recent[t] * recent[t - k] for t in range(k, len(recent))])

    out = []
    for p in candidates:
        if p < horizon:
            lags = _lags_for(p, horizon)
            ok = _enough_history(np.array([len(recent)]), int(lags.max()))[0]
            out.append(np.mean([mean_sq_diff(recent, lag) for lag in lags]) if ok else np.inf)
        elif p <= span // 4:
            out.append(mean_sq_diff(recent, p) if _enough_history(np.array([len(recent)]), p)[0] else np.inf)
        else:
            out.append(mean_sq_diff(row, p) if _enough_history(np.array([len(row)]), p)[0] else np.inf)
    w = mean_window
    if _enough_history(np.array([len(recent)]), horizon + w - 1)[0]:
        cross = np.mean([sum(moment(h + j) for j in range(w)) for h in range(1, horizon + 1)])
        level = sum((w - abs(d)) * moment(abs(d)) for d in range(-(w - 1), w)) / w**2
        out.append(max(moment(0) - 2 * cross / w + level, 0.0))
    else:
        out.append(np.inf)
    return np.array(out)


def test_seasonal_naive_period_errors_match_a_pair_by_pair_computation():
    from mesp_core.forecasting.experts.naive import _period_errors, _right_aligned

    rng = np.random.default_rng(7)
    horizon, candidates, mean_window = 12, [1, 5, 10, 30, 300, 1440], 10
    lengths = [3000, 1600, 700, 90, 40]  # day lag usable, too short for it, short lags only, mean off
    rows = [rng.poisson(rng.uniform(0.5, 40), size=n).astype(np.float64) * (rng.random(n) < 0.6) for n in lengths]
    x, length = _right_aligned(rows, 3000, None)
    fast = _period_errors(x.astype(np.float64), length, horizon, candidates, mean_window)
    slow = np.stack([_period_errors_by_loops(row, horizon, candidates, mean_window) for row in rows])
    np.testing.assert_array_equal(np.isinf(fast), np.isinf(slow))
    np.testing.assert_allclose(fast[np.isfinite(slow)], slow[np.isfinite(slow)], rtol=1e-9, atol=1e-9)


def test_repeat_last_hour_repeats_the_last_60_minutes():
    context = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(RepeatLastHour().predict([context])[0], context[-60:])
    np.testing.assert_array_equal(RepeatLastHour(horizon=90).predict([context])[0][60:], context[-60:-30])


@pytest.mark.parametrize(
    "config, message",
    [
        ({"family": "nope"}, "unknown expert family 'nope'"),
        ({"input_size": 10}, "'family' key"),
        ({"family": "dlinear", "width": 3}, "unknown hyper-parameter.*width"),
        ({"family": "dlinear", "moving_avg": 24}, "must be odd"),
        ({"family": "nbeats", "dropout": 1.5}, "dropout"),
        ({"family": "lstm", "input_size": 100, "patch_len": 24}, "multiple of patch_len"),
        ({"family": "patchtst", "d_model": 30, "n_heads": 4}, "multiple of n_heads"),
        ({"family": "dlinear", "lr": -1}, "lr must be > 0"),
        ({"family": "dlinear", "horizon": 0}, "horizon must be a positive integer"),
        ({"family": "repeat_last_hour", "input_size": 30}, "input_size >= 60"),
        ({"family": "seasonal_naive", "candidates": []}, "at least one period"),
    ],
)
def test_bad_configs_get_clear_errors(config, message):
    with pytest.raises(ValueError, match=message):
        build_expert(config)


def test_mismatched_state_is_rejected():
    state = tiny("dlinear").state_dict()
    with pytest.raises(ValueError, match="shape"):
        build_expert({"family": "dlinear", "input_size": 240}, state)
    with pytest.raises(ValueError, match="missing"):
        build_expert({"family": "nbeats", "input_size": INPUT}, state)
    with pytest.raises(ValueError, match="no weights"):
        build_expert({"family": "seasonal_naive"}, state)


def test_fit_rejects_bad_windows(windows):
    train, _ = windows
    with pytest.raises(ValueError, match="needs input_size 240"):
        tiny("dlinear", input_size=240).fit(train)
    with pytest.raises(ValueError, match="forecasts 30"):
        tiny("dlinear", horizon=30).fit(train)
    with pytest.raises(ValueError, match="WindowSet"):
        tiny("dlinear").fit(train.x)
    with pytest.raises(ValueError, match="max_seconds"):
        tiny("dlinear").fit(train, max_seconds=-1)


def test_blend_mixes_its_members_and_round_trips_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from mesp_core.forecasting.experts import Blend, build_expert

    rng = np.random.default_rng(0)
    contexts = [rng.poisson(20, size=n).astype(np.float32) for n in (90, 300, 1500)]
    naive = build_expert({"family": "seasonal_naive", "horizon": 30})
    net = build_expert({"family": "dlinear", "horizon": 30, "input_size": 120, "seed": 3})
    blend = Blend(horizon=30, members=[naive, net], weights=[0.25, 0.75])
    expected = 0.25 * naive.predict(contexts) + 0.75 * net.predict(contexts)
    np.testing.assert_allclose(blend.predict(contexts), np.maximum(expected, 0), rtol=1e-5, atol=1e-4)
    save_file(blend.state_dict(), str(tmp_path / "b.safetensors"))
    again = build_expert(blend.config(), load_file(str(tmp_path / "b.safetensors")))
    np.testing.assert_array_equal(again.predict(contexts), blend.predict(contexts))
    with pytest.raises(ValueError, match="sum to 1"):
        Blend(horizon=30, members=[naive, net], weights=[0.5, 0.7])
    with pytest.raises(ValueError, match="members it does not have"):
        build_expert(blend.config(), {**blend.state_dict(), "m7.x": blend.state_dict()[next(iter(blend.state_dict()))]})


def test_scale_weighted_loss_is_a_valid_hyperparameter_and_bad_values_are_refused():
    from mesp_core.forecasting.experts import build_expert

    assert build_expert({"family": "dlinear", "loss_weight": "scale"}).config()["loss_weight"] == "scale"
    with pytest.raises(ValueError, match="loss_weight"):
        build_expert({"family": "dlinear", "loss_weight": "volume"})
