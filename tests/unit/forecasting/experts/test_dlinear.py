"""DLinear (mesp_core.forecasting.experts.dlinear): trend + seasonal remainder, one linear head each."""

import numpy as np
import pytest
import torch

from mesp_core.data.windows import make_windows
from mesp_core.forecasting.experts import DLinear, RepeatLastHour
from mesp_core.forecasting.experts.dlinear import torch_net

from .support import HORIZON, assert_numpy_forward_matches_torch, periodic_series, randomized


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


def test_the_trend_of_a_flat_context_is_the_context_itself_so_the_seasonal_head_sees_nothing():
    torch.manual_seed(0)
    net = torch_net()(input_size=48, horizon=6, moving_avg=25)
    with torch.no_grad():
        net.trend_head.weight.fill_(1.0 / 48)  # the trend's mean, for every step
        net.trend_head.bias.zero_()
        net.seasonal_head.bias.zero_()  # its weights stay random
    flat = torch.full((2, 48), 7.0)
    # Edges are padded by repeating the first and last value: the moving average of a constant is that
    # constant, so the remainder is zero and the seasonal head's random weights add nothing.
    torch.testing.assert_close(net(flat), torch.full((2, 6), 7.0))
    ramp = torch.arange(48.0)[None, :]
    assert not torch.allclose(net(ramp), net(torch.full((1, 48), float(ramp.mean()))))  # a ramp has a remainder


def test_moving_avg_is_a_centred_odd_window_and_kept_in_the_config():
    expert = DLinear(horizon=HORIZON, input_size=120, moving_avg=13)
    assert expert.config()["moving_avg"] == 13 and expert.module.kernel == 13
    with pytest.raises(ValueError, match="moving_avg must be odd"):
        DLinear(horizon=HORIZON, input_size=120, moving_avg=12)
    with pytest.raises(ValueError, match="moving_avg must be a positive integer"):
        DLinear(horizon=HORIZON, input_size=120, moving_avg=0)


@pytest.mark.parametrize("moving_avg", [25, 13, 1])
def test_the_numpy_forward_computes_what_the_torch_module_does(moving_avg):
    expert = randomized(DLinear(horizon=60, input_size=120, moving_avg=moving_avg, seed=5))
    assert_numpy_forward_matches_torch(expert)
