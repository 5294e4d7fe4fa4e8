"""Generic N-BEATS (Oreshkin et al., 2020): stacks of fully connected blocks with residual backcasts."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int

__all__ = ["NBeats"]


class _Block(nn.Module):
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(x)
        return self.backcast(h), self.forecast(h)


class _NBeatsNet(nn.Module):
    def __init__(self, input_size, horizon, n_stacks, n_blocks, n_layers, width, dropout):
        super().__init__()
        self.stacks = nn.ModuleList(
            nn.ModuleList(_Block(input_size, horizon, width, n_layers, dropout) for _ in range(n_blocks))
            for _ in range(n_stacks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        forecast = 0.0
        for stack in self.stacks:
            for block in stack:
                backcast, block_forecast = block(residual)
                residual = residual - backcast
                forecast = forecast + block_forecast
        return forecast


class NBeats(TorchExpert):
    family: ClassVar[str] = "nbeats"
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

    def build_module(self) -> nn.Module:
        hp = self.hyperparams
        return _NBeatsNet(
            self.input_size, self.horizon, hp["n_stacks"], hp["n_blocks"], hp["n_layers"], hp["width"], hp["dropout"]
        )

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
