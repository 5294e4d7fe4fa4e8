"""N-BEATS (mesp_core.forecasting.experts.nbeats): stacks of blocks, each forecasting from what the
blocks before it could not explain."""

import pytest
import torch

from mesp_core.forecasting.experts import NBeats

from .support import assert_numpy_forward_matches_torch, randomized


def test_the_forecast_is_the_sum_of_every_blocks_forecast_on_the_residual_left_to_it():
    expert = NBeats(horizon=12, input_size=48, n_stacks=2, n_blocks=3, width=16, seed=4)
    net = expert.module
    assert [len(stack) for stack in net.stacks] == [3, 3]
    x = torch.randn(5, 48, generator=torch.Generator().manual_seed(1))
    residual, by_hand = x, torch.zeros(5, 12)
    for stack in net.stacks:
        for block in stack:
            backcast, forecast = block(residual)
            residual = residual - backcast
            by_hand = by_hand + forecast
    torch.testing.assert_close(net(x), by_hand)


def test_architecture_sizes_are_positive_integers_and_shape_the_weights():
    expert = NBeats(horizon=12, input_size=48, n_stacks=1, n_blocks=1, n_layers=3, width=20)
    state = expert.state_dict()
    assert state["stacks.0.0.fc.0.weight"].shape == (20, 48) and state["stacks.0.0.forecast.weight"].shape == (12, 20)
    assert sum(1 for k in state if k.startswith("stacks.0.0.fc.") and k.endswith(".weight")) == 3
    for name in ("n_stacks", "n_blocks", "n_layers", "width"):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            NBeats(horizon=12, input_size=48, **{name: 0})


@pytest.mark.parametrize("arch", [
    {"n_stacks": 2, "n_blocks": 2, "n_layers": 2, "width": 32, "dropout": 0.0},
    # Dropout shifts the Linears' indices in the blocks' nn.Sequential (fc.0, fc.3, fc.6).
    {"n_stacks": 1, "n_blocks": 2, "n_layers": 3, "width": 64, "dropout": 0.1},
], ids=["no-dropout", "dropout"])
def test_the_numpy_forward_computes_what_the_torch_module_does(arch):
    expert = randomized(NBeats(horizon=60, input_size=240, seed=3, **arch))
    assert_numpy_forward_matches_torch(expert)
