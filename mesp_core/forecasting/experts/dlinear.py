"""DLinear (Zeng et al., 2023): moving-average trend + seasonal remainder, one linear head each."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int

__all__ = ["DLinear"]


class _DLinearNet(nn.Module):
    def __init__(self, input_size: int, horizon: int, moving_avg: int):
        super().__init__()
        self.kernel = moving_avg
        self.trend_head = nn.Linear(input_size, horizon)
        self.seasonal_head = nn.Linear(input_size, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Replicate the edges so the trend is defined at both ends (as in the reference code).
        half = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, half), x, x[:, -1:].expand(-1, half)], dim=1)
        trend = nn.functional.avg_pool1d(padded.unsqueeze(1), self.kernel, stride=1).squeeze(1)
        return self.trend_head(trend) + self.seasonal_head(x - trend)


class DLinear(TorchExpert):
    family: ClassVar[str] = "dlinear"
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {"moving_avg": 25}
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {**TorchExpert.TRAIN_DEFAULTS, "lr": 3e-3}

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        super()._validate_hyperparams(hp)
        hp["moving_avg"] = _positive_int("moving_avg", hp["moving_avg"])
        if hp["moving_avg"] % 2 == 0:
            raise ValueError(f"moving_avg must be odd (a centred window), got {hp['moving_avg']}")

    def build_module(self) -> nn.Module:
        return _DLinearNet(self.input_size, self.horizon, self.hyperparams["moving_avg"])

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {
            "input_size": trial.suggest_categorical("input_size", [120, 240, 480]),
            "moving_avg": trial.suggest_categorical("moving_avg", [13, 25, 61]),
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-5, 1e-4]),
        }
