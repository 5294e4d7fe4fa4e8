"""The numpy backend's network pieces (mesp_core.forecasting.numpy_nets) compute what torch's do."""

import numpy as np
import pytest
import torch

from mesp_core.forecasting.numpy_nets import as_float32_weights, check_backend, linear, lstm, relu, sigmoid, softplus


def test_the_activations_match_torch_in_float32_even_far_out():
    x = np.concatenate([np.linspace(-120, 120, 2001), [-1e4, 1e4, 0.0, 19.999, 20.0, 20.001]]).astype(np.float32)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(sigmoid(x), torch.sigmoid(t).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(softplus(x), torch.nn.functional.softplus(t).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(relu(x), torch.relu(t).numpy())
    assert sigmoid(x).dtype == softplus(x).dtype == relu(x).dtype == np.float32


def test_a_linear_layer_and_a_two_layer_lstm_match_torch():
    torch.manual_seed(0)
    layer = torch.nn.Linear(7, 5)
    net = torch.nn.LSTM(input_size=6, hidden_size=9, num_layers=2, batch_first=True)
    weights = as_float32_weights({**{f"fc.{k}": v.detach() for k, v in layer.state_dict().items()},
                                  **{f"rnn.{k}": v.detach() for k, v in net.state_dict().items()}})
    x = np.random.default_rng(1).normal(size=(11, 4, 6)).astype(np.float32) * 3
    with torch.inference_mode():
        expected_lstm = net(torch.from_numpy(x))[0].numpy()
        expected_linear = layer(torch.from_numpy(x[:, 0, :1].repeat(7, axis=1))).numpy()
    np.testing.assert_allclose(lstm(x, weights, "rnn", 2), expected_lstm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(linear(x[:, 0, :1].repeat(7, axis=1), weights, "fc"), expected_linear, rtol=1e-5, atol=1e-6)


def test_the_backend_names_are_checked():
    assert check_backend("auto") == "auto" and check_backend("numpy", allow_auto=False) == "numpy"
    with pytest.raises(ValueError, match="backend must be one of auto, numpy, torch, got 'jax'"):
        check_backend("jax")
    with pytest.raises(ValueError, match="backend must be one of numpy, torch, got 'auto'"):
        check_backend("auto", allow_auto=False)
