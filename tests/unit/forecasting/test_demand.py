"""The demand head (mesp_core.forecasting.demand): monotone, calibrated on known distributions, saved as tensors."""

from math import lgamma

import numpy as np
import pytest
import torch

from mesp_core.forecasting.demand import DEMAND_LEVELS, N_FEATURES, DemandHead, origin_features


def _poisson_cdf(lam, kmax):
    k = np.arange(kmax + 1)
    return np.cumsum(np.exp(-lam + k * np.log(lam) - np.array([lgamma(i + 1) for i in k])))


@pytest.fixture(scope="module")
def poisson_case():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, T = 300, 360
    rates = np.exp(rng.uniform(np.log(0.2), np.log(300), n))
    head = DemandHead(hidden=64)
    head.fit(rng.poisson(rates[:, None], size=(n, T)).astype(np.float32), max_origins=24_000, epochs=6,
             lr=3e-3, seed=0, batch_size=128)
    test = rng.poisson(rates[:, None], size=(n, T)).astype(np.float32)
    return head, rates, test


def test_quantiles_are_monotone_in_the_level_even_untrained():
    head = DemandHead(hidden=16)
    rng = np.random.default_rng(1)
    q = head.quantiles(rng.poisson(3.0, size=(20, 200)).astype(np.float32))
    assert q.shape == (20, 8, len(DEMAND_LEVELS))
    assert (np.diff(q, axis=2) >= 0).all() and (q >= 0).all()


def test_calibrated_on_poisson_demand(poisson_case):
    head, rates, test = poisson_case
    q = head.quantiles(test[:, :300])
    actual = test[:, 300:308]
    for level in (0.5, 0.8, 0.9, 0.95):
        pred = np.round(q[:, :, DEMAND_LEVELS.index(level)])
        # Counts are whole numbers: a level-quantile k has P(Y < k) <= level <= P(Y <= k).
        assert (actual < pred).mean() < level + 0.04, level
        assert (actual <= pred).mean() > level - 0.04, level
        busy = rates > 30  # nearly continuous: coverage close to the level itself
        assert abs((actual[busy] <= pred[busy]).mean() - level) < 0.07, level
        true_q = np.array([np.argmax(_poisson_cdf(r, int(3 * r + 30)) >= level) for r in rates])
        sparse = rates < 3  # where the floor's 0-or-1 decision lives: mostly the exact quantile
        assert (pred[sparse] == true_q[sparse, None]).mean() > 0.6, level


def test_no_feature_reads_the_origin_or_later():
    rng = np.random.default_rng(2)
    counts = rng.poisson(2.0, size=(3, 3000)).astype(np.float32)
    before, _ = origin_features(counts, [0, 1, 2], [100, 1600, 2999])
    changed = counts.copy()
    changed[0, 100:] = 999
    changed[1, 1600:] = 999
    changed[2, 2999:] = 999
    after, _ = origin_features(changed, [0, 1, 2], [100, 1600, 2999])
    assert before.shape == (3, N_FEATURES)
    assert np.array_equal(before, after)


def test_multi_day_features_are_flagged_and_short_contexts_work():
    counts = np.ones((2, 12000), dtype=np.float32)
    feats, _ = origin_features(counts, [0, 1], [11000, 1000])
    head = DemandHead(hidden=8)
    ragged = head.quantiles([np.ones(61, dtype=np.float32), np.ones(3000, dtype=np.float32)])
    assert ragged.shape == (2, 8, len(DEMAND_LEVELS))
    # Yesterday's flag is on only where a day (and the horizon around it) is in the past.
    day_flag = 120 + 2 + 7 + 2 + 3 + 12
    week_flag = day_flag + 13
    assert feats[0, day_flag] == 1 and feats[1, day_flag] == 0
    assert feats[0, week_flag] == 1 and feats[1, week_flag] == 0


def test_same_seed_same_head_and_round_trip(poisson_case):
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.0, size=(20, 200)).astype(np.float32)
    a, b = DemandHead(hidden=8), DemandHead(hidden=8)
    assert a.fit(counts, max_origins=500, epochs=2, seed=5) == b.fit(counts, max_origins=500, epochs=2, seed=5)
    head = poisson_case[0]
    copy = DemandHead.from_config(head.config(), head.state_dict())
    assert np.array_equal(copy.quantiles(counts), head.quantiles(counts))
    bad = dict(head.state_dict())
    bad.pop(next(iter(bad)))
    with pytest.raises(ValueError, match="do not fit"):
        DemandHead.from_config(head.config(), bad)
    with pytest.raises(ValueError, match="format"):
        DemandHead.from_config({**head.config(), "format": "other"}, head.state_dict())


def test_the_one_origin_fast_path_matches_the_gather():
    rng = np.random.default_rng(4)
    counts = rng.poisson(1.5, size=(3, 1600)).astype(np.float32)
    starts = np.array([0, 500, 0])
    for t in (200, 1500):
        fast, fast_level = origin_features(counts, [0, 1, 2], [t, t, t], starts)
        slow, slow_level = origin_features(counts, [0, 1, 2, 0], [t, t, t, t + 1], starts)
        assert np.array_equal(fast, slow[:3]) and np.array_equal(fast_level, slow_level[:3])


def test_the_window_gather_reads_exactly_what_the_element_gather_reads():
    from mesp_core.forecasting.demand import _gather, _gather_window

    rng = np.random.default_rng(0)
    for trial in range(60):
        n, T = int(rng.integers(1, 6)), int(rng.integers(5, 200))
        counts = rng.poisson(2, size=(n, T)).astype(np.float32)
        starts = rng.integers(0, T, size=n)  # minutes before a row's start read 0 and are not valid
        m, width = int(rng.integers(1, 40)), int(rng.integers(1, 60))
        rows = rng.integers(0, n, size=m)
        first = rng.integers(-80, T + 10, size=m)  # windows before the first minute and past the last
        if trial % 3 == 0:
            first[:] = first[0]
        want = _gather(counts, starts, rows, first[:, None] + np.arange(width)[None, :])
        got = _gather_window(counts, starts, rows, first, width)
        assert got[0].dtype == want[0].dtype and np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_the_numpy_backend_serves_the_same_quantiles_as_torch():
    torch.manual_seed(3)
    head = DemandHead(hidden=32)
    with torch.no_grad():  # redrawn weights: non-zero biases, softplus increments both small and large
        for parameter in head.module.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape))
    head.trained = True
    state = {name: tensor.numpy() for name, tensor in head.state_dict().items()}
    twin = DemandHead.from_config(head.config(), state, backend="numpy")
    assert twin.module is None and twin.backend == "numpy"
    rng = np.random.default_rng(2)
    contexts = [rng.poisson(rng.uniform(0.1, 80), size=length).astype(np.float32) for length in (90, 700, 1500, 3000)]
    expected, got = head.quantiles(contexts), twin.quantiles(contexts)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert (np.diff(got, axis=2) >= 0).all()
    with pytest.raises(ValueError, match="numpy backend; build it with backend 'torch' to train"):
        twin.fit(np.ones((3, 400), dtype=np.float32))
    state.pop("net.4.bias")
    with pytest.raises(ValueError, match="demand head weights do not fit its config"):
        DemandHead.from_config(head.config(), state, backend="numpy")
