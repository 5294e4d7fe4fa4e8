"""A fixed convex blend of other experts: often better than either member (forecast combination).

Training never fits a blend: it ranks a cluster's candidates, then tries mixing the two best with a
few weights on the same validation windows, and keeps the blend only when it wins there."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np

from mesp_core.constants import DEFAULT_HORIZON
from mesp_core.forecasting.experts.base import Expert


class Blend(Expert):
    family: ClassVar[str] = "blend"
    trainable: ClassVar[bool] = False  # members get the raw history and prepare it themselves

    def __init__(self, horizon: int = DEFAULT_HORIZON, input_size: int | None = None, members=(), weights=(), **unused):
        members = [m if isinstance(m, Expert) else _build(m) for m in members]
        if unused:
            raise ValueError(f"unknown hyper-parameter(s) for blend: {', '.join(sorted(unused))}")
        if len(members) < 2 or len(weights) != len(members):
            raise ValueError("a blend needs >= 2 members and one weight per member")
        weights = [float(w) for w in weights]
        if any(w < 0 for w in weights) or not np.isclose(sum(weights), 1.0):
            raise ValueError(f"blend weights must be >= 0 and sum to 1, got {weights}")
        if any(m.horizon != horizon for m in members):
            raise ValueError("every blend member must forecast the blend's horizon")
        self.members = members
        self.weights = weights
        super().__init__(horizon=horizon, input_size=max(m.input_size for m in members))

    def _check_hyperparams(self, given):
        return {}

    def fit(self, train, val=None, *, max_seconds=None, progress=None, init_from=None):
        return self

    def predict(self, contexts) -> np.ndarray:
        out = sum(w * np.asarray(m.predict(contexts), dtype=np.float32) for m, w in zip(self.members, self.weights))
        return np.maximum(out, 0.0).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "horizon": self.horizon,
            "members": [m.config() for m in self.members],
            "weights": list(self.weights),
        }

    def state_dict(self) -> dict:
        return {f"m{i}.{name}": t for i, m in enumerate(self.members) for name, t in m.state_dict().items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state: Mapping[str, Any] | None = None,
                    backend: str = "torch") -> "Blend":
        state = dict(state or {})
        members = []
        for i, member in enumerate(config.get("members", [])):
            prefix = f"m{i}."
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            members.append(_build(member, own, backend))
        leftover = [k for k in state if not any(k.startswith(f"m{i}.") for i in range(len(members)))]
        if leftover:
            raise ValueError(f"blend weights name members it does not have: {leftover[:3]}")
        return cls(horizon=config.get("horizon", DEFAULT_HORIZON), members=members, weights=config.get("weights", ()))

    @property
    def trainable_members(self) -> bool:
        return any(m.trainable for m in self.members)


def _build(config, state=None, backend: str = "torch") -> Expert:
    from mesp_core.forecasting.experts import build_expert

    return build_expert(config, state, backend)
