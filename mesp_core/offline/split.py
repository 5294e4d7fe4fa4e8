"""Which functions each step may see: the fit / validation / held-out split, by key hash.

`mesp train` holds out a share of the functions (never looked at in training) and records the
digests of every key it did see in the model folder; `mesp evaluate` and `mesp simulate` use
`held_out_functions` to run on the others only.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mesp_core.data.trace import split_functions


def key_digest(key: tuple[str, str, str]) -> str:
    return hashlib.sha256("|".join(key).encode()).hexdigest()[:16]


def function_split(trace, test_fraction: float, val_fraction: float, seed: int):
    """`mesp train`'s function-level split, (fit, validation, held out) indices, each sorted: held out
    by key hash (split_functions), then a seeded `val_fraction` of the rest for validation."""
    train_idx, test_idx = split_functions(trace, test_fraction=test_fraction, seed=seed)
    shuffled = np.random.default_rng(seed).permutation(train_idx)
    n_val = max(1, int(round(len(shuffled) * val_fraction)))
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val]), test_idx


def held_out_functions(model, trace) -> np.ndarray:
    """Indices of functions of `trace` the model never trained or validated on."""
    seen_file = model.path / "training_keys.txt" if model.path else None
    seen = set(seen_file.read_text().split()) if seen_file and seen_file.exists() else set()
    return np.array([i for i, key in enumerate(trace.keys) if key_digest(key) not in seen], dtype=np.int64)


def replay_functions(model, trace, all_functions: bool = False) -> np.ndarray:
    """Rows `mesp simulate` replays: the functions the model never saw, or all of them."""
    return np.arange(len(trace.keys), dtype=np.int64) if all_functions else held_out_functions(model, trace)


def seeded_sample(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of n of `rows` (all of them when n >= len(rows)), sorted."""
    if n < 1:
        raise ValueError(f"a sample needs at least 1 function, got {n}")
    if n >= len(rows):
        return np.asarray(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))
