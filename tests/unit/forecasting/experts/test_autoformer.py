"""Autoformer (mesp_core.forecasting.experts.autoformer): series decomposition, auto-correlation,
the encoder-decoder's shapes, training and a save/load round trip."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mesp_core.forecasting.experts import Autoformer, build_expert
from mesp_core.forecasting.experts.autoformer import (
    _AutoCorrelation,
    series_decomposition,
)

from .support import HORIZON, INPUT, TINY


def test_the_decomposition_recovers_a_known_trend_and_season():
    # A season whose period is the kernel averages to zero over the window, so away from the
    # replicated edges the moving average is exactly the (linear) trend.
    kernel, t = 25, torch.arange(300, dtype=torch.float64)
    trend = 0.05 * t + 3.0
    season = 2.0 * torch.sin(2 * torch.pi * t / kernel) + torch.cos(4 * torch.pi * t / kernel)
    x = (trend + season)[None, :, None]
    got_season, got_trend = series_decomposition(x, kernel)
    inner = slice(kernel, -kernel)
    torch.testing.assert_close(got_trend[0, inner, 0], trend[inner], atol=1e-9, rtol=0)
    torch.testing.assert_close(got_season[0, inner, 0], season[inner], atol=1e-9, rtol=0)
    torch.testing.assert_close(got_season + got_trend, x)  # nothing is lost
    assert got_trend.shape == x.shape


def test_auto_correlation_finds_the_period_of_its_input():
    # With identity projections the top delay of a periodic signal is a multiple of its period.
    layer = _AutoCorrelation(d_model=4, n_heads=1, factor=1.0, dropout=0.0)
    for projection in (layer.query, layer.key, layer.value, layer.out):
        torch.nn.init.eye_(projection.weight)
        torch.nn.init.zeros_(projection.bias)
    t = torch.arange(120, dtype=torch.float32)
    x = torch.sin(2 * torch.pi * t / 24)[None, :, None].expand(2, -1, 4).contiguous()
    q = torch.fft.rfft(x, dim=1)
    corr = torch.fft.irfft(q * torch.conj(q), n=120, dim=1).mean(dim=2)[0]
    best_nonzero = int(torch.argmax(corr[1:])) + 1
    assert best_nonzero % 24 == 0
    out = layer(x, x, x)
    assert out.shape == x.shape
    # Rolling a 24-periodic signal by multiples of 24 changes nothing; the softmax weights sum to one.
    torch.testing.assert_close(out, x, atol=0.2, rtol=0)


def test_auto_correlation_equals_the_papers_roll_and_mix_written_out():
    # The layer mixes in the frequency domain; the paper rolls the values by each top delay.
    torch.manual_seed(0)
    layer = _AutoCorrelation(d_model=8, n_heads=2, factor=2.0, dropout=0.0).double()
    queries, memory = torch.randn(3, 50, 8, dtype=torch.float64), torch.randn(3, 40, 8, dtype=torch.float64)
    q, k, v = layer.query(queries), layer.key(memory), layer.value(memory)
    k, v = (torch.cat([t, torch.zeros(3, 10, 8, dtype=torch.float64)], dim=1) for t in (k, v))  # padded to 50
    corr = torch.fft.irfft(torch.fft.rfft(q, dim=1) * torch.conj(torch.fft.rfft(k, dim=1)), n=50, dim=1)
    expected = []
    for b in range(3):
        mean = corr[b].mean(dim=1)
        top, delays = torch.topk(mean, int(2.0 * np.log(50)))
        w = torch.softmax(top, dim=0)
        expected.append(sum(w[i] * torch.roll(v[b], -int(delays[i]), dims=0) for i in range(len(w))))
    torch.testing.assert_close(layer(queries, memory, memory), layer.out(torch.stack(expected)))


@pytest.mark.parametrize("input_size, label_len, e_layers, d_layers", [(120, 30, 1, 1), (240, 60, 2, 1), (60, 60, 1, 2)])
def test_forecasts_have_the_horizons_shape(input_size, label_len, e_layers, d_layers):
    expert = Autoformer(horizon=HORIZON, input_size=input_size, label_len=label_len, e_layers=e_layers,
                        d_layers=d_layers, d_model=8, n_heads=2, d_ff=16)
    out = expert.predict(np.random.default_rng(0).poisson(5.0, size=(3, input_size)).astype(np.float32))
    assert out.shape == (3, HORIZON) and out.dtype == np.float32 and (out >= 0).all()
    # Cross-attention on a context shorter than the decoder's input pads its keys (label + horizon > input).
    assert Autoformer(horizon=90, input_size=60, label_len=60, d_model=8, n_heads=2).predict(np.ones((1, 60))).shape == (1, 90)


def test_a_forecast_does_not_depend_on_the_other_windows_in_its_batch():
    expert = Autoformer(horizon=HORIZON, input_size=INPUT, **TINY["autoformer"])
    x = np.random.default_rng(1).poisson(8.0, size=(6, INPUT)).astype(np.float32)
    # Equal up to float rounding (matrix kernels block differently by batch size); the reference's
    # batch-mean delays would move the forecast itself.
    np.testing.assert_allclose(expert.predict(x)[:1], expert.predict(x[:1]), rtol=1e-4, atol=1e-4)


def test_training_a_few_steps_lowers_the_loss(windows):
    train, val = windows
    expert = Autoformer(horizon=HORIZON, input_size=INPUT, max_epochs=4, patience=4, lr=3e-3, **TINY["autoformer"])
    expert.fit(train, val)
    report = expert.fit_report_
    assert report["epochs"] == 4 and report["steps"] > 0
    assert report["best_val_loss"] < 0.8 * report["initial_val_loss"]


def test_save_and_load_give_identical_forecasts(windows):
    train, val = windows
    expert = Autoformer(horizon=HORIZON, input_size=INPUT, max_epochs=1, seed=5, **TINY["autoformer"]).fit(train, val)
    config = json.loads(json.dumps(expert.config()))
    rebuilt = build_expert(config, st_load(st_save(expert.state_dict())))
    assert rebuilt.config() == expert.config()
    np.testing.assert_array_equal(rebuilt.predict(val.x), expert.predict(val.x))


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="factor must be in"):
        Autoformer(input_size=120, factor=0)
    with pytest.raises(ValueError, match="e_layers must be a positive integer"):
        Autoformer(input_size=120, e_layers=0)
