"""What every expert family shares (mesp_core.forecasting.experts.base): fit/predict shapes and
non-negativity, round trips, determinism, search spaces, warm starts, early stopping, bad windows."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mesp_core.forecasting.experts import EXPERT_FAMILIES, TRAINABLE_FAMILIES, build_expert
from mesp_core.data.windows import make_windows

from .support import HORIZON, INPUT, TINY, periodic_series, tiny


# A blend is built from other experts, so the generic per-family tests below cover the others.
STANDALONE = sorted(set(EXPERT_FAMILIES) - {"blend"})


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


def test_scale_weighted_loss_is_a_valid_hyperparameter_and_bad_values_are_refused():
    from mesp_core.forecasting.experts import build_expert

    assert build_expert({"family": "dlinear", "loss_weight": "scale"}).config()["loss_weight"] == "scale"
    with pytest.raises(ValueError, match="loss_weight"):
        build_expert({"family": "dlinear", "loss_weight": "volume"})


@pytest.mark.parametrize("family", sorted(TINY))
def test_a_forecast_does_not_depend_on_the_other_rows_of_its_batch(family):
    # Shards of a trace (`--ray`) forecast their functions in smaller batches than one process:
    # every row must come out bit for bit the same, alone or among many (see TorchExpert._forward_rows).
    expert = tiny(family, width=256) if family == "nbeats" else tiny(family)
    rng = np.random.default_rng(3)
    contexts = rng.poisson(rng.uniform(0.5, 80, size=(150, 1)), size=(150, INPUT)).astype(np.float32)
    together = expert.predict(contexts)
    apart = np.concatenate([expert.predict(contexts[a:b]) for a, b in ((0, 1), (1, 5), (5, 70), (70, 150))])
    np.testing.assert_array_equal(apart, together)
