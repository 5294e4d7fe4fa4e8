"""Autoformer (Wu et al., NeurIPS 2021), single channel and small enough for a CPU.

The three ideas of the paper, as in its reference code (thuml/Autoformer):
  * series decomposition inside every layer: a moving average (edges replicated) is the trend,
    the remainder the seasonal part;
  * auto-correlation instead of dot-product attention: the period-based dependencies are found
    from the autocorrelation of queries and keys (computed with an FFT, Wiener-Khinchin), and the
    values are rolled by the top-k delays and mixed with softmax weights of their correlations;
  * an encoder-decoder whose decoder refines a seasonal part and accumulates a trend part; the
    decoder's input is the last `label_len` minutes of the context followed by zeros (seasonal) or
    the context mean (trend) for the horizon.

Differences from the reference, for MESP's one-series-per-window setting: there are no calendar
features (minutes of day reach the model only through the context), and the delays are chosen per
window (the reference's inference path) in training too, so a forecast never depends on which
other windows share its mini-batch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from mesp_core.forecasting.experts.base import TorchExpert, _positive_int

__all__ = ["Autoformer", "series_decomposition"]


def series_decomposition(x: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(seasonal, trend) of x [B, L, C]: trend = centred moving average with replicated edges.

    The average is a difference of cumulative sums along time, which needs no transposes (an
    avg_pool over [B, C, L] copies twice per call, and the network calls this in every layer)."""
    front = x[:, :1, :].expand(-1, (kernel - 1) // 2, -1)
    back = x[:, -1:, :].expand(-1, kernel // 2, -1)
    padded = torch.cat([torch.zeros_like(x[:, :1, :]), front, x, back], dim=1)
    sums = padded.cumsum(dim=1)
    trend = (sums[:, kernel:] - sums[:, :-kernel]) / kernel
    return x - trend, trend


class _Decomposition(nn.Module):
    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return series_decomposition(x, self.kernel)


class _SeasonalNorm(nn.Module):
    """LayerNorm, then the time mean removed: the seasonal part stays zero-mean (reference `my_Layernorm`)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return h - h.mean(dim=1, keepdim=True)


class _AutoCorrelation(nn.Module):
    """Multi-head auto-correlation: queries [B, L, D], keys/values [B, S, D] -> [B, L, D]."""

    def __init__(self, d_model: int, n_heads: int, factor: float, dropout: float):
        super().__init__()
        self.factor = factor
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        B, L, D = queries.shape
        S = keys.shape[1]
        q, k, v = self.query(queries), self.key(keys), self.value(values)
        if L > S:  # keys and values shorter than the queries are zero-padded, longer ones cut
            pad = q.new_zeros(B, L - S, D)
            k, v = torch.cat([k, pad], dim=1), torch.cat([v, pad], dim=1)
        else:
            k, v = k[:, :L], v[:, :L]
        # Autocorrelation of every delay at once, R(tau) = irfft(Q * conj(K)) along time, averaged
        # over heads and channels: the reference only uses that mean (to pick and weigh the delays),
        # and averaging before the inverse FFT is the same by linearity. Heads are therefore a view
        # of the channels here, and n_heads only has to divide d_model.
        spectrum = (torch.fft.rfft(q, dim=1) * torch.conj(torch.fft.rfft(k, dim=1))).mean(dim=2)  # [B, F]
        mean_corr = torch.fft.irfft(spectrum, n=L, dim=1)  # [B, L]
        # Time-delay aggregation: the top-k delays, chosen per window.
        top_k = max(1, min(L, int(self.factor * math.log(L))))
        weights, delays = torch.topk(mean_corr, top_k, dim=1)  # [B, k]
        weights = torch.softmax(weights, dim=1)
        # sum_i w_i * v(t + tau_i) (circular), done in the frequency domain: rolling by tau multiplies
        # the spectrum by exp(2 pi j f tau / L), so the k rolled copies never materialise.
        freqs = torch.arange(L // 2 + 1, device=queries.device, dtype=q.dtype)
        phase = 2 * math.pi * delays.to(q.dtype)[:, :, None] * freqs[None, None, :] / L  # [B, k, F]
        response = (weights[:, :, None] * torch.polar(torch.ones_like(phase), phase)).sum(dim=1)  # [B, F]
        mixed = torch.fft.irfft(torch.fft.rfft(v, dim=1) * response[:, :, None], n=L, dim=1)  # [B, L, D]
        return self.out(self.dropout(mixed))


class _FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff, bias=False), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model, bias=False),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _EncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, kernel, factor, dropout):
        super().__init__()
        self.attention = _AutoCorrelation(d_model, n_heads, factor, dropout)
        self.ff = _FeedForward(d_model, d_ff, dropout)
        self.decomp1, self.decomp2 = _Decomposition(kernel), _Decomposition(kernel)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.decomp1(x + self.dropout(self.attention(x, x, x)))
        x, _ = self.decomp2(x + self.ff(x))
        return x


class _DecoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, kernel, factor, dropout):
        super().__init__()
        self.self_attention = _AutoCorrelation(d_model, n_heads, factor, dropout)
        self.cross_attention = _AutoCorrelation(d_model, n_heads, factor, dropout)
        self.ff = _FeedForward(d_model, d_ff, dropout)
        self.decomp1, self.decomp2, self.decomp3 = _Decomposition(kernel), _Decomposition(kernel), _Decomposition(kernel)
        # The trend removed by the three decompositions, projected to the one output channel.
        self.trend_projection = nn.Conv1d(d_model, 1, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomp1(x + self.dropout(self.self_attention(x, x, x)))
        x, trend2 = self.decomp2(x + self.dropout(self.cross_attention(x, memory, memory)))
        x, trend3 = self.decomp3(x + self.ff(x))
        trend = self.trend_projection((trend1 + trend2 + trend3).transpose(1, 2)).transpose(1, 2)
        return x, trend


class _TokenEmbedding(nn.Module):
    """One value per minute -> d_model features (circular 3-tap convolution, as in the reference)."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(1, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.conv(x.transpose(1, 2)).transpose(1, 2))


class _AutoformerNet(nn.Module):
    def __init__(self, input_size, horizon, label_len, d_model, n_heads, e_layers, d_layers, d_ff, moving_avg, factor, dropout):
        super().__init__()
        self.horizon, self.label_len, self.kernel = horizon, label_len, moving_avg
        self.enc_embedding = _TokenEmbedding(d_model, dropout)
        self.dec_embedding = _TokenEmbedding(d_model, dropout)
        self.encoder = nn.ModuleList(
            _EncoderLayer(d_model, n_heads, d_ff, moving_avg, factor, dropout) for _ in range(e_layers)
        )
        self.encoder_norm = _SeasonalNorm(d_model)
        self.decoder = nn.ModuleList(
            _DecoderLayer(d_model, n_heads, d_ff, moving_avg, factor, dropout) for _ in range(d_layers)
        )
        self.decoder_norm = _SeasonalNorm(d_model)
        self.projection = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)  # [B, L, 1]
        seasonal, trend = series_decomposition(x, self.kernel)
        mean = x.mean(dim=1, keepdim=True).expand(-1, self.horizon, -1)
        trend_init = torch.cat([trend[:, -self.label_len :], mean], dim=1)
        seasonal_init = torch.cat([seasonal[:, -self.label_len :], torch.zeros_like(mean)], dim=1)

        memory = self.enc_embedding(x)
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.encoder_norm(memory)

        h = self.dec_embedding(seasonal_init)
        for layer in self.decoder:
            h, residual_trend = layer(h, memory)
            trend_init = trend_init + residual_trend
        seasonal_out = self.projection(self.decoder_norm(h))
        return (trend_init + seasonal_out)[:, -self.horizon :, 0]


class Autoformer(TorchExpert):
    family: ClassVar[str] = "autoformer"
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {
        # The paper's shape (2 encoder layers, 1 decoder layer, moving average 25, factor 1),
        # narrowed for CPUs: d_model 512 -> 16 and d_ff 2048 -> 32. A training step on 256 windows
        # of 240 minutes took 0.39 CPU-s here (d_model 32: 0.78; N-BEATS' default: 0.008): every
        # layer works on [batch, time, d_model] tensors, where N-BEATS works on [batch, width].
        "label_len": 60,
        "d_model": 16,
        "n_heads": 4,
        "e_layers": 2,
        "d_layers": 1,
        "d_ff": 32,
        "moving_avg": 25,
        "factor": 1.0,
        "dropout": 0.0,
    }

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        super()._validate_hyperparams(hp)
        for name in ("label_len", "d_model", "n_heads", "e_layers", "d_layers", "d_ff", "moving_avg"):
            hp[name] = _positive_int(name, hp[name])
        if hp["d_model"] % hp["n_heads"]:
            raise ValueError(f"autoformer: d_model {hp['d_model']} must be a multiple of n_heads {hp['n_heads']}")
        if hp["label_len"] > self.input_size:
            raise ValueError(f"autoformer: label_len {hp['label_len']} exceeds input_size {self.input_size}")
        factor = hp["factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < float(factor) <= 10:
            raise ValueError(f"autoformer: factor must be in (0, 10], got {factor!r}")
        hp["factor"] = float(factor)

    def build_module(self) -> nn.Module:
        hp = self.hyperparams
        return _AutoformerNet(
            self.input_size, self.horizon, hp["label_len"], hp["d_model"], hp["n_heads"], hp["e_layers"],
            hp["d_layers"], hp["d_ff"], hp["moving_avg"], hp["factor"], hp["dropout"],
        )

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {
            "input_size": trial.suggest_categorical("input_size", [120, 240]),
            "label_len": trial.suggest_categorical("label_len", [30, 60]),
            "d_model": trial.suggest_categorical("d_model", [16, 32]),
            "d_ff": trial.suggest_categorical("d_ff", [32, 64]),
            "e_layers": trial.suggest_int("e_layers", 1, 2),
            "moving_avg": trial.suggest_categorical("moving_avg", [13, 25]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.2),
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        }
