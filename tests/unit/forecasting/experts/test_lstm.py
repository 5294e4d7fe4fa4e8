"""The LSTM expert (mesp_core.forecasting.experts.lstm): a recurrence over patches of the context,
with the last patch also fed straight to the head."""

import itertools

import pytest
import torch

from mesp_core.forecasting.experts import LSTMExpert

from .support import assert_numpy_forward_matches_torch, randomized


def test_the_recurrence_runs_over_patches_and_the_head_sees_the_last_patch():
    expert = LSTMExpert(horizon=10, input_size=120, patch_len=24, hidden_size=8, seed=1)
    net = expert.module
    assert net.lstm.input_size == 24 and net.head.in_features == 8 + 24
    x = torch.randn(3, 120, generator=torch.Generator().manual_seed(0))
    out, _ = net.lstm(x.reshape(3, 5, 24))  # 120 minutes = 5 steps of 24
    by_hand = net.head(torch.cat([out[:, -1], x[:, -24:]], dim=1))
    torch.testing.assert_close(net(x), by_hand)


def test_every_input_size_and_patch_length_the_search_may_pick_fit_together():
    # The search space draws input_size and patch_len independently: each pair must build.
    for input_size, patch_len in itertools.product((120, 240, 480), (24, 40, 60)):
        expert = LSTMExpert(horizon=10, input_size=input_size, patch_len=patch_len, hidden_size=4)
        assert expert.predict(torch.ones(1, input_size).numpy()).shape == (1, 10)


def test_dropout_only_between_stacked_layers():
    assert LSTMExpert(horizon=10, input_size=48, dropout=0.2).module.lstm.dropout == 0.0  # one layer: none
    assert LSTMExpert(horizon=10, input_size=48, dropout=0.2, num_layers=2).module.lstm.dropout == 0.2
    with pytest.raises(ValueError, match="must be a multiple of patch_len 24"):
        LSTMExpert(horizon=10, input_size=50)


@pytest.mark.parametrize("arch", [
    {"patch_len": 60, "hidden_size": 128, "num_layers": 1},  # the packaged model's LSTM
    {"patch_len": 24, "hidden_size": 32, "num_layers": 2, "dropout": 0.2},  # dropout between layers: training only
], ids=["one-layer", "two-layers"])
def test_the_numpy_forward_computes_what_the_torch_module_does(arch):
    expert = randomized(LSTMExpert(horizon=60, input_size=240, seed=2, **arch))
    assert_numpy_forward_matches_torch(expert)
