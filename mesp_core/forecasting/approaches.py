"""The forecasting approaches a model offers, named once for the model, the CLI, the replay and the
operator (the MespPolicy CRD's `spec.approach` enum is checked against this list by a test).

- ``moe``: the mixture of experts (router + per-cluster experts + recent-error check);
- ``dense``: the best dense model, trained on every cluster (``dense:<family>`` picks another kept one);
- ``naive``: seasonal naive, the floor every other approach is compared with.
"""

from __future__ import annotations

APPROACHES = ("moe", "dense", "naive")
DENSE_PREFIX = "dense:"
# How reports and plots name each approach.
APPROACH_LABELS = {"naive": "seasonal naive", "dense": "dense", "moe": "MESP MoE"}
APPROACH_HELP = "moe | dense | dense:<family> | naive"


def check_approach(approach: str, *, allow_family: bool = True) -> str:
    """`approach` if it names an approach (``dense:<family>`` only with allow_family), else ValueError."""
    if approach in APPROACHES or (allow_family and isinstance(approach, str) and approach.startswith(DENSE_PREFIX)):
        return approach
    allowed = APPROACHES + ((DENSE_PREFIX + "<family>",) if allow_family else ())
    raise ValueError(f"approach must be one of {', '.join(allowed)}, got {approach!r}")
