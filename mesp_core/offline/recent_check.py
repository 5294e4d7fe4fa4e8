"""The recent-error check's switch ratio, chosen on validation functions (see mesp_core.forecasting.model)."""

from __future__ import annotations

import copy

import numpy as np

from mesp_core.constants import DEFAULT_HORIZON, MIN_CONTEXT, MINUTES_PER_DAY
from mesp_core.forecasting.model import RECENT_CHECK_WINDOW, repeat_last_hour_forecast
from mesp_core.offline.evaluation import DEFAULT_ORIGINS
from mesp_core.offline.metrics import wape


def choose_recent_check(model, counts: np.ndarray, ratios, horizon: int = DEFAULT_HORIZON) -> dict:
    """Pick the recent-error check's switch ratio by WAPE on `counts` (validation functions).

    Same protocol as `mesp evaluate`: origins every 60 minutes from 720 to 1380 of the last day,
    context = every minute before the origin. Each candidate ratio is scored on the same
    forecasts; the check is enabled only if some ratio beats the experts alone."""
    model = copy.copy(model)
    model.recent_check_ratio = None  # score the experts alone, whatever the model's manifest says
    day_offset = max(0, (counts.shape[1] // MINUTES_PER_DAY - 1) * MINUTES_PER_DAY)
    origins = [day_offset + o for o in DEFAULT_ORIGINS]
    origins = [o for o in origins if o >= RECENT_CHECK_WINDOW + MIN_CONTEXT and o + horizon <= counts.shape[1]]
    if not ratios or not origins or len(counts) == 0:
        return {"enabled": False, "reason": "no ratios to try or validation series too short", "val_wape": {}}
    actual, expert, alternative, model_err, alt_err = [], [], [], [], []
    for origin in origins:
        context = counts[:, :origin]
        point = model.forecast(context, horizon, approach="moe")
        errors = model.recent_hour(context, "moe").errors()
        actual.append(counts[:, origin : origin + horizon])
        expert.append(point)
        alternative.append(repeat_last_hour_forecast(list(context), horizon))
        model_err.append(errors[0])
        alt_err.append(errors[1])
    y, f_exp, f_alt = (np.concatenate(a) for a in (actual, expert, alternative))
    m_err, a_err = np.concatenate(model_err), np.concatenate(alt_err)
    scores = {"off": float(wape(y, f_exp))}
    for ratio in ratios:
        with np.errstate(invalid="ignore"):
            switch = a_err < ratio * m_err
        scores[f"{ratio:g}"] = float(wape(y, np.where(switch[:, None], f_alt, f_exp)))
    best = min(scores, key=lambda k: (scores[k], k != "off"))  # ties keep the experts alone
    entry = {"enabled": best != "off", "window": RECENT_CHECK_WINDOW, "alternative": "repeat_last_hour",
             "val_wape": scores, "n_val_functions": int(len(counts)), "origins": len(origins)}
    if best != "off":
        entry["switch_ratio"] = float(best)
    return entry


def describe_recent_check(entry: dict) -> str:
    scores = ", ".join(f"{k} {v:.3f}" for k, v in entry.get("val_wape", {}).items())
    if not entry.get("enabled"):
        return f"off ({entry.get('reason') or 'no ratio beats the experts alone'}; val WAPE {scores or 'n/a'})"
    return f"switch ratio {entry['switch_ratio']:g} (val WAPE {scores})"
