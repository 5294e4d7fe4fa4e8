#!/usr/bin/env python3
"""Write tests/golden/packaged_model_outputs.npz: the packaged model's forecasts, quantiles, routes and
min-scale plans on a fixed generated input. tests/unit/forecasting/test_golden_outputs.py recomputes
them and asks for bit-identical arrays, so a refactor that changes what the shipped model says fails.

Run it again only when the packaged model itself is retrained on purpose (and say so in the commit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "golden" / "packaged_model_outputs.npz"


def golden_inputs() -> dict[str, object]:
    """Fixed contexts: 48 generated functions (3 days, seed 7) cut at several lengths."""
    from mesp_core.data.synthetic import generate_trace

    counts = generate_trace(n_functions=48, days=3, seed=7).counts.astype(np.float32)
    return {
        "full_day": counts[:, 1440:2880],          # one day of context: routing + recent check
        "two_days": counts[:, :2880],              # longer than any expert's input
        "short_130": counts[:, 2000:2130],         # just over the recent-check threshold
        "short_100": counts[:, 2000:2100],         # dense hand-off (< MOE_MIN_CONTEXT)
        "ragged": [counts[i, : 200 + 37 * i] for i in range(12)],  # list path
    }


def golden_outputs(model) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, context in golden_inputs().items():
        for approach in ("moe", "dense", "naive"):
            distribution = model.forecast_distribution(context, 90, approach=approach)
            out[f"{name}/{approach}/point"] = distribution.point
            for q in (0.5, 0.9, 0.95):
                out[f"{name}/{approach}/q{q:g}"] = distribution.quantile(q)
            out[f"{name}/{approach}/switched"] = distribution.switched
        out[f"{name}/routes"] = model.route(context)
        out[f"{name}/route_distances"] = np.array([r["distance"] for r in model.explain_routes(context)])
        out[f"{name}/plan_default"] = model.plan_min_scale(context, 30)  # the floor stage at its default cost
        out[f"{name}/plan_cost"] = model.plan_min_scale(context, 30, capacity_per_instance=7.5, cold_start_cost=32.0)
        out[f"{name}/plan_capacity"] = model.plan_min_scale(context, 30, capacity_per_instance=7.5, lead_minutes=2,
                                                            hold_minutes=1, cooldown_minutes=5, quantile=0.8)
        out[f"{name}/plan_point"] = model.plan_min_scale(context, 30, quantile=None, user_min_scale=1, max_scale=9)
    return out


def main() -> int:
    import torch

    import mesp_core

    # Reductions in torch depend on the thread count; the test pins the same two threads. The file is
    # the torch backend's outputs; the test holds the numpy backend to it as well.
    torch.set_num_threads(2)
    model = mesp_core.load_model(mesp_core.default_model_path(), backend="torch")
    outputs = golden_outputs(model)
    np.savez_compressed(OUT, **outputs)
    print(f"wrote {len(outputs)} arrays to {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
