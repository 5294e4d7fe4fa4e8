"""DLinear (mesp_core.forecasting.experts.dlinear): trend + seasonal remainder, one linear head each."""

import numpy as np

from mesp_core.data.windows import make_windows
from mesp_core.forecasting.experts import DLinear, RepeatLastHour

from .support import HORIZON, periodic_series


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
