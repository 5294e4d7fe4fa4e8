import numpy as np
import pytest
import torch

from mesp_core.offline.config import TrainConfig

# A pipeline small enough for a unit test: every stage runs, each for a few seconds.
TINY = TrainConfig(
    k=3,
    families=("dlinear", "nbeats"),
    dense_trials=1,
    dense_top_n=2,
    scratch_trials=1,
    dense_epochs=4,
    cluster_epochs=3,
    max_dense_windows=3000,
    max_cluster_windows=1500,
    min_cluster_windows=50,
    stride=60,
    threads=1,
    # The experts' path stays what these tests check; tiny_floor_model_dir adds the floor stage and
    # tests/unit/offline/test_calibration.py the quantile calibration.
    floor_stage=False,
    calibrate_quantiles=False,
)
# The floor stage's budget in unit tests (mesp_core.offline.floor_training.FloorConfig).
TINY_FLOOR = dict(origins=6000, epochs=2, hidden=32, max_val_functions=40, costs=(1.0, 8.0, 64.0))


@pytest.fixture(scope="session")
def tiny_trace():
    from mesp_core.data.synthetic import generate_trace

    return generate_trace(n_functions=80, days=2, seed=1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_trace):
    from mesp_core.offline.training import train

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models") / "tiny"
    train(tiny_trace, out, TINY, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_floor_model_dir(tmp_path_factory, tiny_model_dir, tiny_trace):
    """The tiny model with a floor stage added (experts untouched)."""
    from mesp_core.offline.floor_training import FloorConfig, add_floor_stage

    out = tmp_path_factory.mktemp("models") / "tiny-floor"
    add_floor_stage(tiny_model_dir, tiny_trace, out, FloorConfig(**TINY_FLOOR), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from mesp_core import load_model

    return load_model(tiny_model_dir)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
