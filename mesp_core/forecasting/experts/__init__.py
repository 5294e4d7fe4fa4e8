"""Forecasting experts behind one base class, and the registry that rebuilds them from configs.

Non-trainable: ``seasonal_naive`` (the floor and fallback), ``repeat_last_hour``, ``blend`` (a fixed
convex mix of other experts, chosen on validation windows).
Trainable (torch, one shared training loop in ``TorchExpert``): ``dlinear``, ``nbeats``, ``lstm``,
``patchtst``, ``autoformer``. The first three (and every non-trainable one) also forecast with numpy
(``build_expert(..., backend="numpy")``); PatchTST and Autoformer need torch, and their modules are
imported only when a config names them, so serving a model without them never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping as _Mapping
from typing import Any, Iterator, Mapping

from mesp_core.forecasting.experts.base import Expert, TorchExpert
from mesp_core.forecasting.experts.blend import Blend
from mesp_core.forecasting.experts.dlinear import DLinear
from mesp_core.forecasting.experts.lstm import LSTMExpert
from mesp_core.forecasting.experts.naive import APERIODIC, RepeatLastHour, SeasonalNaive, detect_periods
from mesp_core.forecasting.experts.nbeats import NBeats
from mesp_core.data.windows import WindowSet, make_windows, prepare_contexts

__all__ = [
    "Expert",
    "TorchExpert",
    "Blend",
    "SeasonalNaive",
    "RepeatLastHour",
    "DLinear",
    "NBeats",
    "LSTMExpert",
    "PatchTST",
    "Autoformer",
    "EXPERT_FAMILIES",
    "TRAINABLE_FAMILIES",
    "NUMPY_FAMILIES",
    "build_expert",
    "detect_periods",
    "APERIODIC",
    "WindowSet",
    "make_windows",
    "prepare_contexts",
]

_EAGER: dict[str, type[Expert]] = {cls.family: cls for cls in (SeasonalNaive, RepeatLastHour, DLinear, NBeats, LSTMExpert)}
# Families whose module imports torch: family -> (module, class), imported on first use.
_TORCH_ONLY = {"patchtst": ("patchtst", "PatchTST"), "autoformer": ("autoformer", "Autoformer")}
_ORDER = ("seasonal_naive", "repeat_last_hour", "dlinear", "nbeats", "lstm", "patchtst", "autoformer", "blend")


class _Families(_Mapping):
    """family -> expert class, importing the torch-only families' modules when first looked up."""

    def __getitem__(self, family: str) -> type[Expert]:
        if family == Blend.family:
            return Blend
        if family in _EAGER:
            return _EAGER[family]
        module, name = _TORCH_ONLY[family]  # KeyError for unknown families, as a dict
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    def __iter__(self) -> Iterator[str]:
        return iter(_ORDER)

    def __len__(self) -> int:
        return len(_ORDER)

    def __contains__(self, family) -> bool:
        return family in _ORDER


EXPERT_FAMILIES: Mapping[str, type[Expert]] = _Families()
TRAINABLE_FAMILIES: tuple[str, ...] = ("dlinear", "nbeats", "lstm", "patchtst", "autoformer")
# Families that forecast without torch (a blend does when all its members do).
NUMPY_FAMILIES: frozenset[str] = frozenset(_EAGER)


def __getattr__(name: str):
    # `from mesp_core.forecasting.experts import PatchTST` still works, importing torch then.
    for family, (_module, cls_name) in _TORCH_ONLY.items():
        if name == cls_name:
            return EXPERT_FAMILIES[family]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_expert(config: Mapping[str, Any], state=None, backend: str = "torch") -> Expert:
    """Rebuild an expert from ``config()`` output and (for trainable ones) its ``state_dict()``.

    Without ``state`` a trainable expert starts from its seeded initial weights (untrained; torch
    backend only). ``backend="numpy"`` serves trained weights without torch (families in NUMPY_FAMILIES).
    """
    if not isinstance(config, Mapping) or "family" not in config:
        raise ValueError("expert config must be a mapping with a 'family' key")
    family = config["family"]
    if family not in EXPERT_FAMILIES:
        raise ValueError(f"unknown expert family {family!r}; known: {', '.join(EXPERT_FAMILIES)}")
    return EXPERT_FAMILIES[family].from_config(config, state, backend=backend)
