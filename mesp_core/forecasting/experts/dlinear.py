"""DLinear (Zeng et al., 2023): moving-average trend + seasonal remainder, one linear head each.

The network twice, kept side by side: the torch module (training, the torch backend; defined on
first use so that importing this module does not import torch) and its numpy forward (serving)."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int
from mesp_core.forecasting.numpy_nets import linear

__all__ = ["DLinear", "torch_net"]


@functools.cache
def torch_net():
    """The torch network class (DLinear)."""
    import torch
    from torch import nn

    class DLinearNet(nn.Module):
        def __init__(self, input_size: int, horizon: int, moving_avg: int):
            super().__init__()
            self.kernel = moving_avg
            self.trend_head = nn.Linear(input_size, horizon)
            self.seasonal_head = nn.Linear(input_size, horizon)

        def forward(self, x):
            # Replicate the edges so the trend is defined at both ends (as in the reference code).
            half = (self.kernel - 1) // 2
            padded = torch.cat([x[:, :1].expand(-1, half), x, x[:, -1:].expand(-1, half)], dim=1)
            trend = nn.functional.avg_pool1d(padded.unsqueeze(1), self.kernel, stride=1).squeeze(1)
            return self.trend_head(trend) + self.seasonal_head(x - trend)

    return DLinearNet


class DLinear(TorchExpert):
    family: ClassVar[str] = "dlinear"
    numpy_ready: ClassVar[bool] = True
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {"moving_avg": 25}
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {**TorchExpert.TRAIN_DEFAULTS, "lr": 3e-3}

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        super()._validate_hyperparams(hp)
        hp["moving_avg"] = _positive_int("moving_avg", hp["moving_avg"])
        if hp["moving_avg"] % 2 == 0:
            raise ValueError(f"moving_avg must be odd (a centred window), got {hp['moving_avg']}")

    def build_module(self):
        return torch_net()(self.input_size, self.horizon, self.hyperparams["moving_avg"])

    def numpy_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{head}.{part}": shape for head in ("trend_head", "seasonal_head")
                for part, shape in (("weight", (self.horizon, self.input_size)), ("bias", (self.horizon,)))}

    def numpy_forward(self, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        kernel = self.hyperparams["moving_avg"]
        half = (kernel - 1) // 2
        padded = np.concatenate([np.repeat(x[:, :1], half, axis=1), x, np.repeat(x[:, -1:], half, axis=1)], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=1)
        trend = (windows.sum(axis=2, dtype=np.float32) / np.float32(kernel)).astype(np.float32, copy=False)
        return linear(trend, weights, "trend_head") + linear(x - trend, weights, "seasonal_head")

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {
            "input_size": trial.suggest_categorical("input_size", [120, 240, 480]),
            "moving_avg": trial.suggest_categorical("moving_avg", [13, 25, 61]),
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-5, 1e-4]),
        }
