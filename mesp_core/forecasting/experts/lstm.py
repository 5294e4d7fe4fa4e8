"""LSTM encoder over the context cut into patches, linear head to H.

Patches keep the recurrence short (240 minutes / 24 = 10 steps): the recurrence is sequential, and
with 8-minute patches (30 steps) a training step took ~4x longer on CPU here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int

__all__ = ["LSTMExpert"]


class _LSTMNet(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.reshape(x.shape[0], -1, self.patch_len)  # [B, L / patch_len, patch_len]
        out, _ = self.lstm(patches)
        return self.head(torch.cat([out[:, -1], patches[:, -1]], dim=1))


class LSTMExpert(TorchExpert):
    family: ClassVar[str] = "lstm"
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

    def build_module(self) -> nn.Module:
        hp = self.hyperparams
        return _LSTMNet(self.input_size, self.horizon, hp["patch_len"], hp["hidden_size"], hp["num_layers"], hp["dropout"])

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
