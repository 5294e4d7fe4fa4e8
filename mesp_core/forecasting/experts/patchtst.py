"""PatchTST (Nie et al., 2023), single channel: overlapping patches, small transformer, flatten head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int

__all__ = ["PatchTST"]


def n_patches(input_size: int, patch_len: int, stride: int) -> int:
    # The context is padded at the end by `stride` copies of its last value, as in the paper.
    return (input_size + stride - patch_len) // stride + 1


class _PatchTSTNet(nn.Module):
    def __init__(self, input_size, horizon, patch_len, stride, d_model, n_heads, n_layers, d_ff, dropout):
        super().__init__()
        self.patch_len, self.stride = patch_len, stride
        count = n_patches(input_size, patch_len, stride)
        self.embed = nn.Linear(patch_len, d_model)
        self.position = nn.Parameter(torch.randn(count, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=d_ff, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(count * d_model, horizon)
        self.head_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x, x[:, -1:].expand(-1, self.stride)], dim=1)
        patches = padded.unfold(1, self.patch_len, self.stride)  # [B, n_patches, patch_len]
        h = self.encoder(self.embed(patches) + self.position)
        return self.head(self.head_dropout(h.flatten(1)))


class PatchTST(TorchExpert):
    family: ClassVar[str] = "patchtst"
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {
        # Non-overlapping 16-minute patches, a narrow one-layer model and no dropout by default:
        # with stride 8, d_model 64, d_ff 128, 2 layers and dropout 0.1 an epoch on 20k windows
        # took ~48 s on one busy CPU here, ~5.5 s with this config at 2 layers, about half that at
        # 1; dropout's random masks alone were ~30% of a training step.
        "patch_len": 16,
        "stride": 16,
        "d_model": 32,
        "n_heads": 4,
        "n_layers": 1,
        "d_ff": 64,
        "dropout": 0.0,
    }

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        super()._validate_hyperparams(hp)
        for name in ("patch_len", "stride", "d_model", "n_heads", "n_layers", "d_ff"):
            hp[name] = _positive_int(name, hp[name])
        if hp["d_model"] % hp["n_heads"]:
            raise ValueError(f"patchtst: d_model {hp['d_model']} must be a multiple of n_heads {hp['n_heads']}")
        if hp["patch_len"] > self.input_size:
            raise ValueError(f"patchtst: patch_len {hp['patch_len']} exceeds input_size {self.input_size}")

    def build_module(self) -> nn.Module:
        hp = self.hyperparams
        return _PatchTSTNet(
            self.input_size, self.horizon, hp["patch_len"], hp["stride"], hp["d_model"], hp["n_heads"],
            hp["n_layers"], hp["d_ff"], hp["dropout"],
        )

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        patch_len = trial.suggest_categorical("patch_len", [12, 16, 24])
        return {
            "input_size": trial.suggest_categorical("input_size", [120, 240, 480]),
            "patch_len": patch_len,
            "stride": patch_len,
            "d_model": trial.suggest_categorical("d_model", [32, 64]),
            "n_heads": trial.suggest_categorical("n_heads", [2, 4]),
            "n_layers": trial.suggest_int("n_layers", 1, 3),
            "d_ff": trial.suggest_categorical("d_ff", [64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        }
