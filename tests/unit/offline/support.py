"""Traces the offline tests need beyond the generator's."""

import numpy as np


def _novel_trace(n=12, seed=5):
    """Square waves with a 3-hour period: a shape the generator never makes."""
    from mesp_core.data.trace import InvocationTrace

    rng = np.random.default_rng(seed)
    minutes = np.arange(2 * 1440)
    counts = []
    for i in range(n):
        wave = ((minutes + 7 * i) // 90) % 2 * 200.0 + 1.0
        counts.append(rng.poisson(wave).astype(np.float32))
    keys = [(f"own{i}", f"app{i}", f"fn{i}") for i in range(n)]
    return InvocationTrace(
        keys=keys,
        triggers=["timer"] * n,
        counts=np.stack(counts),
        days=["d01", "d02"],
        present=np.ones((n, 2), bool),
    )
