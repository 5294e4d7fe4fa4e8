"""The family registry (mesp_core.forecasting.experts): every family named once, rebuilt from its config,
and configs it cannot build refused with a clear message."""

import pytest

from mesp_core.forecasting.experts import EXPERT_FAMILIES, TRAINABLE_FAMILIES, Expert, TorchExpert, build_expert


def test_registry_names_every_family():
    assert set(EXPERT_FAMILIES) == {"seasonal_naive", "repeat_last_hour", "dlinear", "nbeats", "lstm", "patchtst", "autoformer",
                                  "blend"}
    assert set(TRAINABLE_FAMILIES) == {"dlinear", "nbeats", "lstm", "patchtst", "autoformer"}
    for name, cls in EXPERT_FAMILIES.items():
        assert issubclass(cls, Expert) and cls.family == name
        assert cls.trainable == issubclass(cls, TorchExpert)


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
        ({"family": "autoformer", "d_model": 30, "n_heads": 4}, "multiple of n_heads"),
        ({"family": "autoformer", "input_size": 48, "label_len": 60}, "label_len 60 exceeds input_size 48"),
        ({"family": "dlinear", "lr": -1}, "lr must be > 0"),
        ({"family": "dlinear", "horizon": 0}, "horizon must be a positive integer"),
        ({"family": "repeat_last_hour", "input_size": 30}, "input_size >= 60"),
        ({"family": "seasonal_naive", "candidates": []}, "at least one period"),
    ],
)
def test_bad_configs_get_clear_errors(config, message):
    with pytest.raises(ValueError, match=message):
        build_expert(config)
