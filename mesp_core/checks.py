"""Argument checks shared by the policy, the replay and its baselines: one wording for every error."""

from __future__ import annotations

import math

import numpy as np


def check_int(name, value, low):
    """`value` must be an integer (not a bool) >= low."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def check_number(name, value, low, low_inclusive=True):
    """`value` must be a finite number (not a bool) >= low (> low unless low_inclusive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < low or (value == low and not low_inclusive):
        relation = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {relation} {low}, got {value}")
