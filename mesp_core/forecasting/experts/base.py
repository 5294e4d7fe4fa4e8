"""One base class for every forecaster, and one for every torch forecaster.

``Expert`` fixes the contract (fit / predict / config / state_dict / from_config / search_space).
``TorchExpert`` implements everything a neural forecaster needs except the network itself:
per-window mean scaling, L1 loss, Adam with mini-batches, early stopping on a validation split,
an optional wall-clock cap, warm starts, determinism, progress bars and batched inference. Subclasses only
declare their architecture hyper-parameters and build an ``nn.Module`` mapping scaled [B, L] -> [B, H];
those with a ``numpy_forward`` of the same network can also serve without torch (``backend="numpy"``:
loaded weights only, no training). torch is imported where it is used, never by importing this module.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from mesp_core.constants import DEFAULT_HORIZON
from mesp_core.data.windows import WindowSet, prepare_contexts
from mesp_core.forecasting.numpy_nets import as_float32_weights, check_backend

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Expert", "TorchExpert"]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Expert(ABC):
    """A forecaster of the next ``horizon`` minutes from the last ``input_size`` minutes."""

    family: ClassVar[str]
    trainable: ClassVar[bool]
    # Whether it forecasts without torch (see TorchExpert's backend); experts without a network do.
    numpy_ready: ClassVar[bool] = True
    # Default context length; families override it.
    default_input_size: ClassVar[int] = 240

    def __init__(self, horizon: int = DEFAULT_HORIZON, input_size: int | None = None, **hyperparams):
        self.horizon = _positive_int("horizon", horizon)
        self.input_size = _positive_int(
            "input_size", self.default_input_size if input_size is None else input_size
        )
        self.hyperparams = self._check_hyperparams(hyperparams)

    # ---- hyper-parameters ------------------------------------------------------------------
    @classmethod
    def default_hyperparams(cls) -> dict[str, Any]:
        """Every accepted hyper-parameter (besides horizon and input_size) with its default."""
        return {}

    def _check_hyperparams(self, given: Mapping[str, Any]) -> dict[str, Any]:
        defaults = self.default_hyperparams()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown hyper-parameter(s) for {self.family}: {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(defaults)) or 'none'}"
            )
        merged = {**defaults, **given}
        self._validate_hyperparams(merged)
        return merged

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        """Raise ValueError for invalid values (subclasses extend)."""

    # ---- the contract ----------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        train: WindowSet,
        val: WindowSet | None = None,
        *,
        max_seconds: float | None = None,
        progress=None,
        init_from: "Expert | None" = None,
    ) -> "Expert":
        """Train on windows (no-op for non-trainable experts); returns self."""

    @abstractmethod
    def predict(self, contexts) -> np.ndarray:
        """Forecast float32 [n, horizon] >= 0 from contexts [n, input_size] (or any lengths/list)."""

    def config(self) -> dict[str, Any]:
        """JSON-able description: family, horizon, input_size and every hyper-parameter."""
        return {
            "family": self.family,
            "horizon": self.horizon,
            "input_size": self.input_size,
            **{k: _jsonable(v) for k, v in self.hyperparams.items()},
        }

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state: Mapping[str, Any] | None = None,
                    backend: str = "torch") -> "Expert":
        """Rebuild from ``config()`` and weights; ``backend`` matters only to experts with a network."""
        if not isinstance(config, Mapping):
            raise ValueError(f"expert config must be a mapping, got {type(config).__name__}")
        params = dict(config)
        family = params.pop("family", cls.family)
        if family != cls.family:
            raise ValueError(f"config is for family {family!r}, not {cls.family!r}")
        expert = cls._construct(params, backend)
        expert.load_state(state or {})
        return expert

    @classmethod
    def _construct(cls, params: dict, backend: str) -> "Expert":
        return cls(**params)

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.family} has no weights, but a state with {len(state)} tensor(s) was given")

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {}

    # ---- helpers ---------------------------------------------------------------------------
    def _contexts(self, contexts) -> np.ndarray:
        return prepare_contexts(contexts, self.input_size)

    def _check_windows(self, windows: WindowSet, what: str) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(windows, WindowSet):
            raise ValueError(f"{what} must be a WindowSet (see mesp_core.data.windows.make_windows)")
        if len(windows) == 0:
            raise ValueError(f"{what} has no windows")
        if windows.horizon != self.horizon:
            raise ValueError(f"{what} targets cover {windows.horizon} minutes but the expert forecasts {self.horizon}")
        if windows.input_size < self.input_size:
            raise ValueError(
                f"{what} windows hold {windows.input_size} minutes of context but the expert needs "
                f"input_size {self.input_size}; build the windows with input_size >= {self.input_size}"
            )
        x = prepare_contexts(windows.x, self.input_size)  # validates, and cuts wider windows
        y = windows.y
        if not np.isfinite(y).all() or (y < 0).any():
            raise ValueError(f"{what} targets contain non-finite or negative values")
        return x, y

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "family")
        return f"{type(self).__name__}({args})"


def _jsonable(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


LOSS_WEIGHT_POWER = {"none": 0.0, "sqrt_scale": 0.5, "scale": 1.0}


class TorchExpert(Expert):
    """Shared training and inference for neural experts; subclasses implement ``build_module``
    (and, to serve without torch, ``numpy_forward`` and ``numpy_shapes`` with ``numpy_ready``)."""

    trainable: ClassVar[bool] = True
    numpy_ready: ClassVar[bool] = False
    default_input_size: ClassVar[int] = 240
    # Training hyper-parameters common to all neural families.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "batch_size": 256,
        "max_epochs": 20,
        "patience": 3,
        "weight_decay": 0.0,
        "seed": 0,
        # Per-window loss weight: scale**p with p = 0 ("none"), 0.5 ("sqrt_scale") or 1 ("scale").
        # "scale" makes the loss a WAPE (busy functions count by their volume).
        "loss_weight": "none",
    }
    # Architecture hyper-parameters, per family.
    ARCH_DEFAULTS: ClassVar[dict[str, Any]] = {}
    predict_batch_size: ClassVar[int] = 4096

    def __init__(self, horizon: int = DEFAULT_HORIZON, input_size: int | None = None, *, backend: str = "torch",
                 **hyperparams):
        super().__init__(horizon=horizon, input_size=input_size, **hyperparams)
        self.fit_report_: dict[str, Any] = {}
        # "numpy": forecasts with numpy_forward from loaded weights (self.weights), never imports torch.
        self.backend = check_backend(backend, allow_auto=False)
        self.module = None
        self.weights: dict[str, np.ndarray] | None = None
        if backend == "numpy":
            if not self.numpy_ready:
                raise ValueError(f"{self.family} has no numpy forward; load it with backend 'torch'")
            return
        import torch

        # Initial weights depend only on the seed, not on whatever used the global RNG before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hyperparams["seed"])
            self.module = self.build_module()
        self._check_float_state()

    @classmethod
    def _construct(cls, params: dict, backend: str) -> "TorchExpert":
        return cls(**params, backend=backend)

    @classmethod
    def default_hyperparams(cls) -> dict[str, Any]:
        return {**cls.TRAIN_DEFAULTS, **cls.ARCH_DEFAULTS}

    def _validate_hyperparams(self, hp: dict[str, Any]) -> None:
        for name in ("batch_size", "max_epochs", "patience"):
            hp[name] = _positive_int(name, hp[name])
        if isinstance(hp["seed"], bool) or not isinstance(hp["seed"], (int, np.integer)) or hp["seed"] < 0:
            raise ValueError(f"seed must be a non-negative integer, got {hp['seed']!r}")
        hp["seed"] = int(hp["seed"])
        for name in ("lr", "weight_decay"):
            value = hp[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            hp[name] = float(value)
        if not (hp["lr"] > 0 and math.isfinite(hp["lr"])):
            raise ValueError(f"lr must be > 0, got {hp['lr']}")
        if not (hp["weight_decay"] >= 0 and math.isfinite(hp["weight_decay"])):
            raise ValueError(f"weight_decay must be >= 0, got {hp['weight_decay']}")
        if hp["loss_weight"] not in LOSS_WEIGHT_POWER:
            raise ValueError(f"loss_weight must be one of {sorted(LOSS_WEIGHT_POWER)}, got {hp['loss_weight']!r}")
        if "dropout" in hp:
            d = hp["dropout"]
            if isinstance(d, bool) or not isinstance(d, (int, float, np.floating)) or not 0.0 <= float(d) < 1.0:
                raise ValueError(f"dropout must be in [0, 1), got {d!r}")
            hp["dropout"] = float(d)

    @abstractmethod
    def build_module(self) -> "nn.Module":
        """The network: scaled contexts [B, input_size] -> scaled forecasts [B, horizon]."""

    def numpy_forward(self, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        """The same network in numpy (families with ``numpy_ready``): weights are build_module()'s
        state_dict entries as float32 arrays, x [B, input_size] scaled -> [B, horizon]."""
        raise NotImplementedError(f"{self.family} has no numpy forward")

    def numpy_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight numpy_forward reads and its shape: build_module()'s state_dict, without torch."""
        raise NotImplementedError(f"{self.family} has no numpy forward")

    def _check_float_state(self) -> None:
        for name, tensor in self.module.state_dict().items():
            if not tensor.is_floating_point():
                raise TypeError(f"{self.family}: state entry {name} is {tensor.dtype}; only float tensors are allowed")

    # ---- weights -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, "torch.Tensor"]:
        """torch tensors; with the numpy backend, copies of its float32 numpy arrays."""
        if self.module is None:
            return {k: v.copy() for k, v in (self.weights or {}).items()}
        import torch

        # Clones: contiguous, unshared float32 tensors that safetensors can save as they are.
        return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in self.module.state_dict().items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        if self.module is None:
            own = self.numpy_shapes()
        else:
            own = {k: tuple(v.shape) for k, v in self.module.state_dict().items()}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{self.family} weights do not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[key]):
                raise ValueError(
                    f"{self.family} weight {key} has shape {tuple(tensor.shape)}, config needs {tuple(own[key])}"
                )
        if self.module is None:
            self.weights = as_float32_weights(state)
            return
        import torch

        self.module.load_state_dict({k: torch.as_tensor(v).to(torch.float32) for k, v in state.items()}, strict=True)

    # ---- scaling -------------------------------------------------------------------------------
    @staticmethod
    def _scale(x: np.ndarray) -> np.ndarray:
        # Mean absolute level (+1 so that idle contexts keep unit scale): float32 [n, 1].
        return (np.abs(x).mean(axis=1, keepdims=True) + 1.0).astype(np.float32)

    # ---- training ------------------------------------------------------------------------------
    def fit(
        self,
        train: WindowSet,
        val: WindowSet | None = None,
        *,
        max_seconds: float | None = None,
        progress=None,
        init_from: "Expert | None" = None,
    ) -> "TorchExpert":
        """Train with Adam on the L1 loss of scaled forecasts.

        With ``val``, the weights with the lowest validation loss (including the starting weights)
        are kept and training stops after ``patience`` epochs without improvement. Epochs and
        patience are counts, so the seed and the data fix the weights. ``max_seconds`` is an
        optional wall-clock cap (checked before every mini-batch; 0 means no step); a fit it ends
        early is load-dependent and says so: ``fit_report_["cut_short"]`` is True.
        ``init_from`` (same family and config shapes) copies its weights before fine-tuning.
        """
        import torch

        if self.module is None:
            raise ValueError(f"this {self.family} expert serves with the numpy backend; build it with backend 'torch' to train")
        started = time.perf_counter()
        if max_seconds is not None and (not isinstance(max_seconds, (int, float)) or max_seconds < 0):
            raise ValueError(f"max_seconds must be a number >= 0 or None, got {max_seconds!r}")
        x, y = self._check_windows(train, "train")
        if val is not None:
            xv, yv = self._check_windows(val, "val")
        if init_from is not None:
            self._warm_start(init_from)

        hp = self.hyperparams
        scale = self._scale(x)
        xs = torch.from_numpy(x / scale)
        ys = torch.from_numpy(y / scale)
        ws = self._loss_weights(scale)
        if val is not None:
            vscale = self._scale(xv)
            xvs = torch.from_numpy(xv / vscale)
            yvs = torch.from_numpy(yv / vscale)
            wvs = self._loss_weights(vscale)

        n = xs.shape[0]
        batch = min(hp["batch_size"], n)
        steps_per_epoch = math.ceil(n / batch)
        report: dict[str, Any] = {"epochs": 0, "steps": 0, "stopped": "max_epochs", "train_windows": int(n)}

        def out_of_time() -> bool:
            return max_seconds is not None and time.perf_counter() - started >= max_seconds

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp["seed"])
            shuffle = torch.Generator().manual_seed(hp["seed"])
            optimizer = torch.optim.Adam(self.module.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
            best_val = self._loss(xvs, yvs, wvs) if val is not None else math.inf
            report["initial_val_loss"] = best_val if val is not None else None
            best_state = self._copy_state() if val is not None else None
            bad_epochs = 0
            bar = None
            if progress:
                from tqdm import tqdm

                desc = progress if isinstance(progress, str) else self.family
                bar = tqdm(total=hp["max_epochs"], desc=desc, unit="epoch", leave=False)
            try:
                for epoch in range(hp["max_epochs"]):
                    if out_of_time():
                        report["stopped"] = "max_seconds"
                        break
                    self.module.train()
                    order = torch.randperm(n, generator=shuffle)
                    total, seen = 0.0, 0
                    for step in range(steps_per_epoch):
                        if out_of_time():
                            report["stopped"] = "max_seconds"
                            break
                        idx = order[step * batch : (step + 1) * batch]
                        optimizer.zero_grad(set_to_none=True)
                        loss = _weighted_l1(self.module(xs[idx]), ys[idx], ws[idx])
                        loss.backward()
                        optimizer.step()
                        total += loss.detach().item() * idx.shape[0]
                        seen += idx.shape[0]
                        report["steps"] += 1
                    if seen == 0:
                        break
                    report["epochs"] = epoch + 1
                    report["train_loss"] = total / seen
                    if val is not None:
                        val_loss = self._loss(xvs, yvs, wvs)
                        report["val_loss"] = val_loss
                        if val_loss < best_val - 1e-6 * abs(best_val):
                            best_val, best_state, bad_epochs = val_loss, self._copy_state(), 0
                        else:
                            bad_epochs += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(train=f"{report['train_loss']:.4f}", val=f"{report.get('val_loss', float('nan')):.4f}")
                    if report["stopped"] == "max_seconds":
                        break
                    if val is not None and bad_epochs >= hp["patience"]:
                        report["stopped"] = "early_stopping"
                        break
            finally:
                if bar is not None:
                    bar.close()
            if best_state is not None:
                self.module.load_state_dict(best_state)
                report["best_val_loss"] = best_val
        self.module.eval()
        report["cut_short"] = report["stopped"] == "max_seconds"
        report["seconds"] = time.perf_counter() - started
        self.fit_report_ = report
        return self

    def _warm_start(self, source: "Expert") -> None:
        if not isinstance(source, TorchExpert) or source.family != self.family:
            raise ValueError(
                f"init_from must be a trained {self.family} expert, got {getattr(source, 'family', type(source).__name__)}"
            )
        mine = {k: v for k, v in self.config().items() if k not in self.TRAIN_DEFAULTS}
        theirs = {k: v for k, v in source.config().items() if k not in self.TRAIN_DEFAULTS}
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"init_from has a different architecture ({', '.join(diff)} differ); cannot copy its weights")
        self.load_state(source.state_dict())

    def _copy_state(self) -> dict[str, "torch.Tensor"]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def _forward_batches(self, xs: "torch.Tensor") -> "torch.Tensor":
        import torch

        self.module.eval()
        outs = []
        with torch.inference_mode():
            for start in range(0, xs.shape[0], self.predict_batch_size):
                outs.append(self.module(xs[start : start + self.predict_batch_size]))
        return torch.cat(outs) if outs else torch.zeros((0, self.horizon))

    def _loss(self, xs: "torch.Tensor", ys: "torch.Tensor", weights: "torch.Tensor") -> float:
        return float(_weighted_l1(self._forward_batches(xs), ys, weights))

    def _loss_weights(self, scale: np.ndarray) -> "torch.Tensor":
        import torch

        power = LOSS_WEIGHT_POWER[self.hyperparams["loss_weight"]]
        return torch.from_numpy((scale[:, 0].astype(np.float64) ** power).astype(np.float32))

    # ---- inference -----------------------------------------------------------------------------
    def predict(self, contexts) -> np.ndarray:
        x = self._contexts(contexts)
        if x.shape[0] == 0:
            return np.zeros((0, self.horizon), dtype=np.float32)
        scale = self._scale(x)
        out = self._forward_rows(x / scale)
        return np.maximum(out * scale, 0.0).astype(np.float32, copy=False)

    def _forward_rows(self, xs: np.ndarray) -> np.ndarray:
        """The network on blocks of exactly PREDICT_ROWS rows (the last one padded with zeros).

        A matrix product's kernel depends on its number of rows (MKL takes another path under 16),
        so the last bits of a row's forecast would depend on how many others share its batch; with
        one block shape they do not: a function gets the same forecast alone, in a shard of the
        trace (`--ray`) or among thousands. Both backends run the same blocks."""
        n = xs.shape[0]
        padded = np.zeros((-(-n // PREDICT_ROWS) * PREDICT_ROWS, *xs.shape[1:]), dtype=np.float32)
        padded[:n] = xs
        if self.module is None:
            if self.weights is None:
                raise ValueError(f"this {self.family} expert has no weights: the numpy backend serves trained models only")
            outs = [self.numpy_forward(self.weights, padded[start: start + PREDICT_ROWS])
                    for start in range(0, len(padded), PREDICT_ROWS)]
            return np.concatenate(outs)[:n]
        import torch

        self.module.eval()
        blocks = torch.from_numpy(padded)
        with torch.inference_mode():
            outs = [self.module(blocks[start: start + PREDICT_ROWS]) for start in range(0, len(blocks), PREDICT_ROWS)]
        return torch.cat(outs)[:n].numpy()


PREDICT_ROWS = 64  # rows of every forward pass at inference (see TorchExpert._forward_rows)


def _weighted_l1(pred: "torch.Tensor", target: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """Mean absolute error of scaled forecasts, windows weighted (weights are per window)."""
    per_window = (pred - target).abs().mean(dim=1)
    return (per_window * weights).sum() / weights.sum().clamp_min(1e-12)
