"""What `mesp train` may spend and try (mesp_core.offline.config): validation, the quick budget, the
config as recorded in a manifest."""

import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from mesp_core.offline.config import TrainConfig, config_json, quick, train_config_fields

from ..paths import REPO


def test_the_defaults_are_valid_and_validate_returns_the_config():
    config = TrainConfig()
    assert config.validate() is config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be >= 1, got 0"),
        ({"k_min": 1}, r"need 2 <= k_min <= k_max, got 1..10"),
        ({"k_min": 6, "k_max": 5}, r"need 2 <= k_min <= k_max, got 6..5"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
        ({"val_fraction": 0.0}, r"val_fraction in \(0, 1\)"),
        ({"input_size_max": 239}, "input_size_max must be >= 240"),
        ({"max_fit_windows": 0}, "window caps must be >= 1"),
        ({"max_cluster_windows": 0}, "window caps must be >= 1"),
        ({"max_val_functions": 0}, "max_val_functions must be >= 1, got 0"),
        ({"max_cluster_days": 9}, r"max_cluster_days must be >= k_max \(10\)"),
        ({"metric": "mae"}, "only metric 'wape'"),
        ({"dense_epochs": 0}, r"dense_epochs must be a positive integer \(a count, not seconds\), got 0"),
        ({"cluster_epochs": 2.5}, "cluster_epochs must be a positive integer"),
        ({"max_fit_seconds": 0}, "max_fit_seconds must be a positive number or None"),
        ({"family_max_windows": {"autoformer": 0}}, r"family_max_windows\['autoformer'\] must be a positive integer"),
        ({"family_max_windows": {"transformer": 10}}, "family_max_windows names unknown family 'transformer'"),
        ({"recent_check_ratios": (0.5, 0.0)}, "recent_check_ratios must be in"),
        ({"families": ("dlinear", "transformer")}, r"unknown trainable families \['transformer'\]; choose from \["),
        ({"families": ("seasonal_naive",)}, r"unknown trainable families \['seasonal_naive'\]"),  # a floor, not trained
        ({"families": ("blend",)}, r"unknown trainable families \['blend'\]; choose from \['autoformer', 'dlinear'"),  # a mix, not trained
    ],
)
def test_validate_names_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs).validate()


def test_quick_shrinks_the_budget_and_keeps_the_choices():
    config = TrainConfig(k=4, families=("dlinear",), dense_trials=5, k_max=12, seed=3, test_fraction=0.1)
    small = quick(config)
    assert (small.dense_epochs, small.cluster_epochs) == (4, 3)
    assert (small.max_dense_windows, small.max_cluster_windows) == (15_000, 6_000)
    assert (small.dense_trials, small.k_max) == (2, 8)
    assert (small.k, small.families, small.seed, small.test_fraction) == (4, ("dlinear",), 3, 0.1)
    assert config.dense_trials == 5 and config.dense_epochs == 8  # the given config is left as it was
    assert quick(TrainConfig(dense_trials=1, k_max=5)).dense_trials == 1  # never more than asked for
    assert quick(small) == small
    small.validate()


def test_the_config_recorded_in_a_manifest_comes_back_as_the_same_config():
    config = TrainConfig(k=5, families=("nbeats", "dlinear"), blend_weights=(0.5,), seed=9)
    recorded = config_json(config)
    assert json.loads(json.dumps(recorded)) == recorded and recorded["families"] == ["nbeats", "dlinear"]
    manifest = {"training": {"config": {**recorded, "a_field_from_a_newer_version": 1}}}
    fields = train_config_fields(manifest)
    assert "a_field_from_a_newer_version" not in fields and fields["families"] == ("nbeats", "dlinear")
    # Lists stay lists apart from families (as extend reads them); every value is the one recorded.
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()} == asdict(config)
    assert train_config_fields({}) == {}


def test_the_config_loads_without_torch_or_optuna():
    # `mesp train --help` shows these defaults; it must not pay for the training libraries.
    probe = "import sys, mesp_core.offline.config; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
