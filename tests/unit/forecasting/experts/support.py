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


def randomized(expert, seed=0, scale=0.2):
    """The torch expert with every weight and bias redrawn (seeded): biases are not zero then, and
    no layer is left at a special value the numpy forward could get right by accident."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in expert.module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return expert


def numpy_twin(expert):
    """The same expert served by the numpy backend, from the torch expert's weights as numpy arrays."""
    state = {name: tensor.numpy() for name, tensor in expert.state_dict().items()}
    return build_expert(expert.config(), state, backend="numpy")


def assert_numpy_forward_matches_torch(expert, n_rows=150, seed=1):
    """numpy_forward == the torch module on random scaled inputs, and predict() of both backends on
    random counts (scaling and 64-row blocks included), float32 to within rounding."""
    import torch

    twin = numpy_twin(expert)
    assert twin.backend == "numpy" and twin.module is None
    assert twin.numpy_shapes() == {k: tuple(v.shape) for k, v in expert.module.state_dict().items()}
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.0, size=(n_rows, expert.input_size)).astype(np.float32)
    expert.module.eval()
    with torch.inference_mode():
        expected = expert.module(torch.from_numpy(x)).numpy()
    got = twin.numpy_forward(twin.weights, x)
    assert got.dtype == np.float32 and got.shape == expected.shape == (n_rows, expert.horizon)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    counts = rng.poisson(rng.uniform(0, 50, size=(n_rows, 1)), size=(n_rows, expert.input_size + 7)).astype(np.float32)
    expected = expert.predict(counts)
    got = twin.predict(counts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
