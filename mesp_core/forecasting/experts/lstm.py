"""LSTM encoder over the context cut into patches, linear head to H.

Patches keep the recurrence short (240 minutes / 24 = 10 steps): the recurrence is sequential, and
with 8-minute patches (30 steps) a training step took ~4x longer on CPU here.

The network twice, kept side by side: the torch module (training, the torch backend; defined on
first use so that importing this module does not import torch) and its numpy forward (serving).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int
from mesp_core.forecasting.numpy_nets import linear, lstm

__all__ = ["LSTMExpert", "torch_net"]


@functools.cache
def torch_net():
    """The torch network class (patch LSTM)."""
    import torch
    from torch import nn

    class LSTMNet(nn.Module):
        def __init__(self, input_size, horizon, patch_len, hidden_size, num_layers, dropout):
            super().__init__()
            self.patch_len = patch_len
            self.lstm = nn.LSTM(
                input_size=patch_len,
                hidden_size=hidden_size,
                num_layers=num_layers,
                batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0,
            )
            # The last hidden state plus the last patch itself (a skip path for the level).
            self.head = nn.Linear(hidden_size + patch_len, horizon)

        def forward(self, x):
            patches = x.reshape(x.shape[0], -1, self.patch_len)  # [B, L / patch_len, patch_len]
            out, _ = self.lstm(patches)
            return self.head(torch.cat([out[:, -1], patches[:, -1]], dim=1))

    return LSTMNet


class LSTMExpert(TorchExpert):
    family: ClassVar[str] = "lstm"
    numpy_ready: ClassVar[bool] = True
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {
        "patch_len": 24,
        "hidden_size": 64,
        "num_layers": 1,
        "dropout": 0.0,
    }

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        super()._validate_hyperparams(hp)
        for name in ("patch_len", "hidden_size", "num_layers"):
            hp[name] = _positive_int(name, hp[name])
        if self.input_size % hp["patch_len"]:
            raise ValueError(f"lstm: input_size {self.input_size} must be a multiple of patch_len {hp['patch_len']}")

    def build_module(self):
        hp = self.hyperparams
        return torch_net()(self.input_size, self.horizon, hp["patch_len"], hp["hidden_size"], hp["num_layers"],
                           hp["dropout"])

    def numpy_shapes(self) -> dict[str, tuple[int, ...]]:
        hp = self.hyperparams
        hidden, size = hp["hidden_size"], hp["patch_len"]
        shapes = {}
        for layer in range(hp["num_layers"]):
            shapes[f"lstm.weight_ih_l{layer}"] = (4 * hidden, size if layer == 0 else hidden)
            shapes[f"lstm.weight_hh_l{layer}"] = (4 * hidden, hidden)
            shapes[f"lstm.bias_ih_l{layer}"] = shapes[f"lstm.bias_hh_l{layer}"] = (4 * hidden,)
        shapes["head.weight"], shapes["head.bias"] = (self.horizon, hidden + size), (self.horizon,)
        return shapes

    def numpy_forward(self, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        patch_len = self.hyperparams["patch_len"]
        patches = x.reshape(x.shape[0], -1, patch_len)
        out = lstm(patches, weights, "lstm", self.hyperparams["num_layers"])
        return linear(np.concatenate([out[:, -1], patches[:, -1]], axis=1), weights, "head")

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {
            "input_size": trial.suggest_categorical("input_size", [120, 240, 480]),
            "patch_len": trial.suggest_categorical("patch_len", [24, 40, 60]),
            "hidden_size": trial.suggest_categorical("hidden_size", [32, 64, 128]),
            "num_layers": trial.suggest_int("num_layers", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "lr": trial.suggest_float("lr", 3e-4, 5e-3, log=True),
        }
