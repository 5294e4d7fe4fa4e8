"""The few network pieces the numpy backend needs, written like their torch counterparts.

Serving a model does not need torch: its networks are small (linear layers, ReLU, an LSTM), and
importing torch alone costs ~0.5 GB of resident memory. Each family keeps its numpy forward next
to its torch module (experts/nbeats.py, lstm.py, dlinear.py, demand.py) and builds it from these
pieces; tests check every numpy forward against the torch module on random weights. Weights are
the torch modules' state_dict entries (float32 numpy arrays read from the same safetensors files).
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("auto", "numpy", "torch")


def check_backend(backend: str, allow_auto: bool = True) -> str:
    allowed = BACKENDS if allow_auto else BACKENDS[1:]
    if backend not in allowed:
        raise ValueError(f"backend must be one of {', '.join(allowed)}, got {backend!r}")
    return backend


def linear(x: np.ndarray, weights: dict, name: str) -> np.ndarray:
    """torch.nn.Linear: x @ weight.T + bias, with the `name.weight` / `name.bias` entries."""
    out = x @ weights[f"{name}.weight"].T
    bias = weights.get(f"{name}.bias")
    return out if bias is None else out + bias


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows (1 / (1 + exp(-x)) does for x < -88 in float32).
    return np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1.0))


def softplus(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.softplus: log(1 + e^x), in one stable ufunc (above torch's threshold of 20,
    where torch returns x itself, the two differ by under e^-20, below float32's resolution there)."""
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def lstm(x: np.ndarray, weights: dict, name: str, num_layers: int) -> np.ndarray:
    """torch.nn.LSTM(batch_first=True) at inference, zero initial state: outputs [B, T, hidden].

    Gates in torch's order (input, forget, cell, output); every step's input projection is one
    matrix product per layer, as torch's CPU kernel does it."""
    batch, steps, _ = x.shape
    out = x
    for layer in range(num_layers):
        w_ih, w_hh = weights[f"{name}.weight_ih_l{layer}"], weights[f"{name}.weight_hh_l{layer}"]
        hidden = w_hh.shape[1]
        bias = weights[f"{name}.bias_ih_l{layer}"] + weights[f"{name}.bias_hh_l{layer}"]
        projected = (out.reshape(batch * steps, -1) @ w_ih.T + bias).reshape(batch, steps, 4 * hidden)
        h = np.zeros((batch, hidden), dtype=np.float32)
        c = np.zeros((batch, hidden), dtype=np.float32)
        outputs = np.empty((batch, steps, hidden), dtype=np.float32)
        w_hh_t = w_hh.T
        for t in range(steps):
            gates = projected[:, t] + h @ w_hh_t
            i = sigmoid(gates[:, :hidden])
            f = sigmoid(gates[:, hidden: 2 * hidden])
            g = np.tanh(gates[:, 2 * hidden: 3 * hidden])
            o = sigmoid(gates[:, 3 * hidden:])
            c = f * c + i * g
            h = o * np.tanh(c)
            outputs[:, t] = h
        out = outputs
    return out


def as_float32_weights(state) -> dict[str, np.ndarray]:
    """A state dict (numpy arrays, or torch tensors on the CPU) as contiguous float32 numpy arrays."""
    return {name: np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for name, value in state.items()}
