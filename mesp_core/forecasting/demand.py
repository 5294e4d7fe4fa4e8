"""DemandHead: calibrated multi-quantile forecasts of the next minutes' invocations, for floors.

The experts are chosen for volume error (WAPE), but a min-scale floor is decided by whether a minute
has any invocation and by when its count crosses a multiple of an instance's capacity. This head
forecasts what the floor consumes: per-minute quantiles of the count for the next HEAD_HORIZON
minutes, at DEMAND_LEVELS (dense near the top, where floors are sized). Instance demand
ceil(count / capacity) (1 for any invocation) is a non-decreasing function of the count, so its
quantiles are exactly `demand_instances` of the count's quantiles, at any capacity.

A small MLP on features of each origin's past (the last RECENT minutes scaled by their level,
busy shares, idle time, the same minutes yesterday and last week with availability flags, so it
uses multi-day history when there is some and degrades to today's features without), trained with
pinball loss. Quantiles are monotone by construction: the lowest plus cumulative softplus
increments. Budgets are counts (origins, epochs); a seed fixes the result. The MLP is written twice,
side by side: the torch module (training, the torch backend; defined on first use) and its numpy
forward (the numpy backend, which serves a loaded head without importing torch).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Mapping

import numpy as np

from mesp_core.forecasting.numpy_nets import as_float32_weights, check_backend, linear, relu, softplus

if TYPE_CHECKING:
    import torch

HEAD_HORIZON = 8
DEMAND_LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9,
                 0.925, 0.95, 0.965, 0.975, 0.985, 0.99)
RECENT = 120
BUSY_WINDOWS = (5, 15, 30, 60, 120, 240, 1440)
SEASONAL_LAGS = (1440, 10080)
# Minutes around the same time yesterday / last week: 2 before the origin to 2 past the horizon.
_LAG_OFFSETS = np.arange(-2, HEAD_HORIZON + 2)
_IDLE_CAP = 1440
N_FEATURES = RECENT + 2 + len(BUSY_WINDOWS) + 2 + 3 + len(SEASONAL_LAGS) * (len(_LAG_OFFSETS) + 1) + 1
FORMAT = "demand-head-v1"
_CHUNK = 4096


def _gather(counts: np.ndarray, starts: np.ndarray, rows: np.ndarray, columns: np.ndarray):
    """counts[rows, columns] with columns [m, w]; (values, valid): columns before a row's first
    minute (`starts`) or past its end read 0 and are not valid."""
    valid = (columns >= starts[rows][:, None]) & (columns < counts.shape[1])
    first = columns[0]
    if (columns == first).all() and (np.diff(first) == 1).all():
        # Every origin reads the same minutes (the replay's case): one slice instead of a gather.
        lo, hi = int(first[0]), int(first[-1]) + 1
        a, b = min(max(lo, 0), counts.shape[1]), min(max(hi, 0), counts.shape[1])
        values = np.zeros((len(rows), len(first)), dtype=np.float32)
        if b > a:
            values[:, a - lo: b - lo] = counts[rows, a:b]
        values[~valid] = 0.0
        return values, valid
    safe = np.clip(columns, 0, counts.shape[1] - 1)
    values = np.where(valid, counts[rows[:, None], safe], 0.0).astype(np.float32)
    return values, valid


def _gather_window(counts: np.ndarray, starts: np.ndarray, rows: np.ndarray, first: np.ndarray, width: int):
    """_gather of columns first[i] .. first[i] + width - 1 of row rows[i]: the same (values, valid), copied
    as whole windows of a zero-padded block instead of element by element (the day window of every
    origin; the floor stage's choice reads 240 consecutive origins per function)."""
    T = counts.shape[1]
    columns = first[:, None] + np.arange(width)[None, :]
    valid = (columns >= starts[rows][:, None]) & (columns < T)
    lo, hi = int(first.min()), int(first.max()) + width
    unique, inverse = np.unique(rows, return_inverse=True)
    block = np.zeros((len(unique), hi - lo), dtype=np.float32)
    a, b = min(max(lo, 0), T), min(max(hi, 0), T)
    if b > a:
        block[:, a - lo: b - lo] = counts[unique, a:b]
    values = np.lib.stride_tricks.sliding_window_view(block, width, axis=1)[inverse, first - lo]
    values[~valid] = 0.0
    return values, valid


def origin_features(counts: np.ndarray, rows, origins, starts=None) -> tuple[np.ndarray, np.ndarray]:
    """Features [m, N_FEATURES] and level [m] of forecasts made at minute `origins[i]` of row
    `rows[i]` of counts [n, T], from minutes < origin only (minutes before `starts[row]` are
    unknown, e.g. the left padding of a short context)."""
    counts = np.asarray(counts, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    origins = np.asarray(origins, dtype=np.int64)
    starts = np.zeros(counts.shape[0], dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
    # In chunks: each origin reads a day of minutes, so 100k origins at once would take gigabytes.
    pieces = [_features(counts, rows[lo: lo + _CHUNK], origins[lo: lo + _CHUNK], starts)
              for lo in range(0, len(rows), _CHUNK)] or [_features(counts, rows, origins, starts)]
    return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])


def demand_examples(counts: np.ndarray, rows, origins, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The demand head's training examples at (rows[i], origins[i]) of counts [n, T]: features
    [m, N_FEATURES] and the next `horizon` minutes over the level [m, horizon], row by row (a map
    function of mesp_core.offline.trace_access)."""
    rows = np.asarray(rows, dtype=np.int64)
    origins = np.asarray(origins, dtype=np.int64)
    x, level = origin_features(counts, rows, origins)
    y = counts[rows[:, None], origins[:, None] + np.arange(horizon)[None, :]] / level[:, None]
    return x, y.astype(np.float32)


def _features(counts, rows, origins, starts):
    m = len(rows)
    day, day_ok = _gather_window(counts, starts, rows, origins - _IDLE_CAP, _IDLE_CAP)
    recent, recent_ok = day[:, -RECENT:], day_ok[:, -RECENT:]
    n_recent = np.maximum(recent_ok.sum(axis=1), 1)
    level = recent.sum(axis=1) / n_recent + 1.0
    busy = day > 0
    parts = [recent / level[:, None], np.log1p(level - 1.0)[:, None] / 10.0,
             (np.log1p(n_recent) / np.log1p(RECENT))[:, None]]
    for w in BUSY_WINDOWS:
        ok = day_ok[:, -w:]
        parts.append((busy[:, -w:].sum(axis=1) / np.maximum(ok.sum(axis=1), 1))[:, None])
    last_busy = np.where(busy.any(axis=1), _IDLE_CAP - 1 - np.argmax(busy[:, ::-1], axis=1), _IDLE_CAP)
    parts.append((np.log1p(last_busy) / np.log1p(_IDLE_CAP))[:, None])
    parts.append((~busy.any(axis=1)).astype(np.float32)[:, None])
    parts.append((recent.std(axis=1) / level)[:, None])
    parts.append((recent.max(axis=1) / level)[:, None])
    parts.append((np.log1p(day.max(axis=1)) - np.log1p(level - 1.0))[:, None] / 5.0)
    for lag in SEASONAL_LAGS:
        values, ok = _gather(counts, starts, rows, origins[:, None] - lag + _LAG_OFFSETS[None, :])
        available = ok.all(axis=1)
        parts.append(np.where(available[:, None], values / level[:, None], 0.0))
        parts.append(available.astype(np.float32)[:, None])
    history = origins - starts[rows]
    parts.append((np.log1p(np.maximum(history, 0)) / np.log1p(10080 + 1440))[:, None])
    features = np.concatenate(parts, axis=1).astype(np.float32)
    assert features.shape == (m, N_FEATURES), features.shape
    return np.minimum(features, 50.0), level.astype(np.float32)


def pad_contexts(contexts) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (2-D array or ragged list, oldest first) as one left-padded array and each row's start."""
    if isinstance(contexts, np.ndarray) and contexts.ndim == 2:
        return contexts.astype(np.float32, copy=False), np.zeros(contexts.shape[0], dtype=np.int64)
    rows = [np.asarray(r, dtype=np.float32) for r in contexts]
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.float32)
    starts = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, width - len(r):] = r
        starts[i] = width - len(r)
    return out, starts


@functools.cache
def torch_net():
    """The torch network class (the quantile MLP)."""
    import torch
    from torch import nn

    class QuantileMLP(nn.Module):
        def __init__(self, n_features: int, hidden: int, horizon: int, n_levels: int):
            super().__init__()
            self.horizon, self.n_levels = horizon, n_levels
            self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, horizon * n_levels))

        def forward(self, x):
            raw = self.net(x).view(-1, self.horizon, self.n_levels)
            # Monotone in the level: the lowest quantile plus non-negative increments.
            steps = torch.nn.functional.softplus(raw[..., 1:])
            return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(steps, dim=-1)], dim=-1)

    return QuantileMLP


def numpy_forward(weights: dict[str, np.ndarray], x: np.ndarray, horizon: int, n_levels: int) -> np.ndarray:
    """The quantile MLP in numpy: features [m, N_FEATURES] -> scaled quantiles [m, horizon, n_levels]."""
    h = relu(linear(x, weights, "net.0"))
    h = relu(linear(h, weights, "net.2"))
    raw = linear(h, weights, "net.4").reshape(-1, horizon, n_levels)
    steps = softplus(raw[..., 1:])
    return np.concatenate([raw[..., :1], raw[..., :1] + np.cumsum(steps, axis=-1)], axis=-1)


def _numpy_shapes(hidden: int, horizon: int, n_levels: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, (out, size) in (("net.0", (hidden, N_FEATURES)), ("net.2", (hidden, hidden)),
                              ("net.4", (horizon * n_levels, hidden))):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, size), (out,)
    return shapes


def pinball_loss(pred: "torch.Tensor", target: "torch.Tensor", levels: "torch.Tensor") -> "torch.Tensor":
    """Mean pinball loss of quantiles pred [B, H, L] for targets [B, H] at `levels` [L]."""
    import torch

    diff = target.unsqueeze(-1) - pred
    return torch.maximum(levels * diff, (levels - 1.0) * diff).mean()


class DemandHead:
    """Quantiles [n, HEAD_HORIZON, len(levels)] of the next minutes' counts, from contexts."""

    def __init__(self, hidden: int = 128, levels=DEMAND_LEVELS, horizon: int = HEAD_HORIZON, backend: str = "torch"):
        if horizon != HEAD_HORIZON:
            raise ValueError(f"the demand head forecasts {HEAD_HORIZON} minutes, got horizon {horizon}")
        levels = tuple(float(q) for q in levels)
        if not levels or any(not 0.0 < q < 1.0 for q in levels) or list(levels) != sorted(set(levels)):
            raise ValueError(f"levels must be increasing and in (0, 1), got {levels}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        self.hidden, self.levels, self.horizon = hidden, levels, horizon
        # "numpy": a loaded head served by numpy_forward from self.weights; torch is never imported.
        self.backend = check_backend(backend, allow_auto=False)
        self.module = torch_net()(N_FEATURES, hidden, horizon, len(levels)) if backend == "torch" else None
        self.weights: dict[str, np.ndarray] | None = None
        self.trained = False

    # ------------------------------------------------------------------ training
    def fit(self, counts: np.ndarray, max_origins: int = 120_000, epochs: int = 6, batch_size: int = 512,
            lr: float = 2e-3, seed: int = 0, min_history: int = 60, progress=None) -> list[float]:
        """Fit on series counts [n, T] at a seeded sample of origins; returns the loss per epoch.
        `progress` is an optional callable(n) called after each batch (a tqdm bar's update)."""
        if self.backend != "torch":
            raise ValueError("this demand head serves with the numpy backend; build it with backend 'torch' to train")
        counts = np.asarray(counts, dtype=np.float32)
        rows, origins = self.sample_origins(counts.shape[0], counts.shape[1], max_origins, seed, min_history)
        x, y = demand_examples(counts, rows, origins, self.horizon)
        return self.fit_examples(x, y, epochs, batch_size, lr, seed, progress)

    def sample_origins(self, n: int, T: int, max_origins: int = 120_000, seed: int = 0,
                       min_history: int = 60) -> tuple[np.ndarray, np.ndarray]:
        """`fit`'s seeded sample of (row, origin) among n series of T minutes."""
        if T < min_history + self.horizon + 1:
            raise ValueError(f"series of {T} minutes are too short to train the demand head")
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, n, size=max_origins)
        origins = rng.integers(min_history, T - self.horizon + 1, size=max_origins)
        return rows, origins

    def fit_examples(self, x: np.ndarray, y: np.ndarray, epochs: int = 6, batch_size: int = 512, lr: float = 2e-3,
                     seed: int = 0, progress=None) -> list[float]:
        """`fit` on examples already cut (`demand_examples`): features x and targets y over level."""
        import torch

        if self.backend != "torch":
            raise ValueError("this demand head serves with the numpy backend; build it with backend 'torch' to train")
        torch.manual_seed(seed)  # the seed fixes the initial weights too: fit starts from scratch
        self.module = torch_net()(N_FEATURES, self.hidden, self.horizon, len(self.levels))
        xs, ys = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.float32))
        levels = torch.tensor(self.levels, dtype=torch.float32)
        optimiser = torch.optim.Adam(self.module.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        losses = []
        self.module.train()
        for _ in range(epochs):
            order = torch.randperm(len(xs), generator=generator)
            total = 0.0
            for lo in range(0, len(xs), batch_size):
                batch = order[lo: lo + batch_size]
                loss = pinball_loss(self.module(xs[batch]), ys[batch], levels)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
                if progress is not None:
                    progress(1)
            losses.append(total / len(xs))
        self.module.eval()
        self.trained = True
        return losses

    @staticmethod
    def batches(max_origins: int, epochs: int, batch_size: int) -> int:
        """How many optimiser steps `fit` takes (for a progress bar)."""
        return epochs * -(-max_origins // batch_size)

    # ------------------------------------------------------------------ inference
    def quantiles_at(self, counts: np.ndarray, rows, origins, starts=None) -> np.ndarray:
        """Count quantiles [m, horizon, levels] of forecasts made at minute origins[i] of rows[i]."""
        x, level = origin_features(counts, rows, origins, starts)
        if self.module is None:
            out = numpy_forward(self.weights, x, self.horizon, len(self.levels))
        else:
            import torch

            with torch.inference_mode():
                out = self.module(torch.from_numpy(x)).numpy()
        return np.maximum(out * level[:, None, None], 0.0)

    def quantiles(self, contexts) -> np.ndarray:
        """Count quantiles [n, horizon, levels] for the minutes right after each context."""
        counts, starts = pad_contexts(contexts)
        n, T = counts.shape
        return self.quantiles_at(counts, np.arange(n), np.full(n, T), starts)

    def level_index(self, q: float) -> int:
        """Index of the stored level nearest to q."""
        return int(np.argmin(np.abs(np.asarray(self.levels) - q)))

    # ------------------------------------------------------------------ artifact
    def config(self) -> dict:
        return {"format": FORMAT, "hidden": self.hidden, "levels": list(self.levels), "horizon": self.horizon,
                "n_features": N_FEATURES}

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        if self.module is None:
            return {k: v.copy() for k, v in (self.weights or {}).items()}
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    @classmethod
    def from_config(cls, config: Mapping, state: Mapping, backend: str = "torch") -> "DemandHead":
        """Rebuild a saved head (torch tensors or numpy arrays); ValueError says what does not fit."""
        if config.get("format") != FORMAT:
            raise ValueError(f"demand head format {config.get('format')!r} is not {FORMAT!r}")
        if config.get("n_features") != N_FEATURES:
            raise ValueError(f"demand head expects {config.get('n_features')} features, this MESP makes {N_FEATURES}")
        head = cls(hidden=config["hidden"], levels=config["levels"], horizon=config["horizon"], backend=backend)
        if head.module is None:
            shapes = _numpy_shapes(head.hidden, head.horizon, len(head.levels))
            given = {k: tuple(v.shape) for k, v in state.items()}
            if given != shapes:
                raise ValueError(f"demand head weights do not fit its config: expected {shapes}, got {given}")
            head.weights = as_float32_weights(state)
            values = head.weights.values()
        else:
            import torch

            try:
                head.module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"demand head weights do not fit its config: {exc}") from None
            head.module.eval()
            values = [t.numpy() for t in head.module.state_dict().values()]
        if not all(np.isfinite(v).all() for v in values):
            raise ValueError("demand head weights contain NaN or infinite values")
        head.trained = True
        return head
