"""Forecasting experts behind one base class, and the registry that rebuilds them from configs.

Non-trainable: ``seasonal_naive`` (the floor and fallback), ``repeat_last_hour``, ``blend`` (a fixed
convex mix of other experts, chosen on validation windows).
Trainable (torch, one shared training loop in ``TorchExpert``): ``dlinear``, ``nbeats``, ``lstm``,
``patchtst``, ``autoformer``.
"""

from __future__ import annotations

from typing import Any, Mapping

from mesp_core.forecasting.experts.autoformer import Autoformer
from mesp_core.forecasting.experts.base import Expert, TorchExpert
from mesp_core.forecasting.experts.blend import Blend
from mesp_core.forecasting.experts.dlinear import DLinear
from mesp_core.forecasting.experts.lstm import LSTMExpert
from mesp_core.forecasting.experts.naive import APERIODIC, RepeatLastHour, SeasonalNaive, detect_periods
from mesp_core.forecasting.experts.nbeats import NBeats
from mesp_core.forecasting.experts.patchtst import PatchTST
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
    "build_expert",
    "detect_periods",
    "APERIODIC",
    "WindowSet",
    "make_windows",
    "prepare_contexts",
]

EXPERT_FAMILIES: dict[str, type[Expert]] = {
    cls.family: cls for cls in (SeasonalNaive, RepeatLastHour, DLinear, NBeats, LSTMExpert, PatchTST, Autoformer, Blend)
}
TRAINABLE_FAMILIES: tuple[str, ...] = tuple(name for name, cls in EXPERT_FAMILIES.items() if cls.trainable)


def build_expert(config: Mapping[str, Any], state=None) -> Expert:
    """Rebuild an expert from ``config()`` output and (for trainable ones) its ``state_dict()``.

    Without ``state`` a trainable expert starts from its seeded initial weights (untrained).
    """
    if not isinstance(config, Mapping) or "family" not in config:
        raise ValueError("expert config must be a mapping with a 'family' key")
    family = config["family"]
    if family not in EXPERT_FAMILIES:
        raise ValueError(f"unknown expert family {family!r}; known: {', '.join(EXPERT_FAMILIES)}")
    return EXPERT_FAMILIES[family].from_config(config, state)
