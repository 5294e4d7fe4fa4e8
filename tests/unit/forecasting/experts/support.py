"""Small expert configurations and periodic series the expert tests share."""

import numpy as np

from mesp_core.forecasting.experts import build_expert

HORIZON = 60
INPUT = 120


# Small architectures so that the expert tests stay fast on one thread.
TINY = {
    "dlinear": {},
    "nbeats": {"n_stacks": 1, "n_blocks": 2, "width": 32},
    "lstm": {"hidden_size": 16, "patch_len": 24},
    "patchtst": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "patch_len": 24, "stride": 12},
    "autoformer": {"d_model": 8, "n_heads": 2, "e_layers": 1, "d_ff": 16, "label_len": 30},
}


def periodic_series(n_series=12, length=900, period=45, noise=1.0, seed=0):
    """Spiky periodic counts with Poisson-like noise, levels spanning two orders of magnitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for i in range(n_series):
        level = 10 ** rng.uniform(0, 2)
        shape = 1 + 0.9 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + 2.0 * (t % period == 3)
        out.append(np.maximum(level * shape + noise * rng.normal(0, np.sqrt(level), size=length), 0).astype(np.float32))
    return out


def tiny(family, **extra):
    return build_expert({"family": family, "input_size": INPUT, "horizon": HORIZON, "max_epochs": 2, **TINY[family], **extra})
