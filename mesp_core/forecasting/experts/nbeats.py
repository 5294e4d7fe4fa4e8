"""Generic N-BEATS (Oreshkin et al., 2020): stacks of fully connected blocks with residual backcasts.

The network twice, kept side by side: the torch module (training, the torch backend; defined on
first use so that importing this module does not import torch) and its numpy forward (serving)."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int
from mesp_core.forecasting.numpy_nets import linear, relu

__all__ = ["NBeats", "torch_net"]


@functools.cache
def torch_net():
    """The torch network class (N-BEATS)."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, input_size: int, horizon: int, width: int, n_layers: int, dropout: float):
            super().__init__()
            layers: list[nn.Module] = []
            size = input_size
            for _ in range(n_layers):
                layers += [nn.Linear(size, width), nn.ReLU()]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                size = width
            self.fc = nn.Sequential(*layers)
            self.backcast = nn.Linear(width, input_size)
            self.forecast = nn.Linear(width, horizon)

        def forward(self, x):
            h = self.fc(x)
            return self.backcast(h), self.forecast(h)

    class NBeatsNet(nn.Module):
        def __init__(self, input_size, horizon, n_stacks, n_blocks, n_layers, width, dropout):
            super().__init__()
            self.stacks = nn.ModuleList(
                nn.ModuleList(Block(input_size, horizon, width, n_layers, dropout) for _ in range(n_blocks))
                for _ in range(n_stacks)
            )

        def forward(self, x):
            residual = x
            forecast = 0.0
            for stack in self.stacks:
                for block in stack:
                    backcast, block_forecast = block(residual)
                    residual = residual - backcast
                    forecast = forecast + block_forecast
            return forecast

    return NBeatsNet


def _fc_names(hp: dict) -> list[str]:
    """State-dict prefixes of a block's hidden Linear layers: nn.Sequential numbers ReLU (and
    Dropout, when there is one) too, so the Linears sit at every 2nd (3rd) index."""
    stride = 3 if hp["dropout"] > 0 else 2
    return [f"fc.{i * stride}" for i in range(hp["n_layers"])]


class NBeats(TorchExpert):
    family: ClassVar[str] = "nbeats"
    numpy_ready: ClassVar[bool] = True
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_stacks": 2,
        "n_blocks": 2,
        "n_layers": 2,
        "width": 128,
        "dropout": 0.0,
    }

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        super()._validate_hyperparams(hp)
        for name in ("n_stacks", "n_blocks", "n_layers", "width"):
            hp[name] = _positive_int(name, hp[name])

    def build_module(self):
        hp = self.hyperparams
        return torch_net()(
            self.input_size, self.horizon, hp["n_stacks"], hp["n_blocks"], hp["n_layers"], hp["width"], hp["dropout"]
        )

    def _blocks(self):
        hp = self.hyperparams
        return [f"stacks.{s}.{b}" for s in range(hp["n_stacks"]) for b in range(hp["n_blocks"])]

    def numpy_shapes(self) -> dict[str, tuple[int, ...]]:
        width = self.hyperparams["width"]
        shapes = {}
        for block in self._blocks():
            size = self.input_size
            for name in _fc_names(self.hyperparams):
                shapes[f"{block}.{name}.weight"], shapes[f"{block}.{name}.bias"] = (width, size), (width,)
                size = width
            for name, out in (("backcast", self.input_size), ("forecast", self.horizon)):
                shapes[f"{block}.{name}.weight"], shapes[f"{block}.{name}.bias"] = (out, width), (out,)
        return shapes

    def numpy_forward(self, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        residual = x
        forecast = np.zeros((x.shape[0], self.horizon), dtype=np.float32)
        for block in self._blocks():
            h = residual
            for name in _fc_names(self.hyperparams):
                h = relu(linear(h, weights, f"{block}.{name}"))
            residual = residual - linear(h, weights, f"{block}.backcast")
            forecast = forecast + linear(h, weights, f"{block}.forecast")
        return forecast

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {
            "input_size": trial.suggest_categorical("input_size", [120, 240, 480]),
            "n_stacks": trial.suggest_int("n_stacks", 1, 3),
            "n_blocks": trial.suggest_int("n_blocks", 1, 3),
            "n_layers": trial.suggest_int("n_layers", 2, 3),
            "width": trial.suggest_categorical("width", [64, 128, 256]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "lr": trial.suggest_float("lr", 2e-4, 3e-3, log=True),
        }
